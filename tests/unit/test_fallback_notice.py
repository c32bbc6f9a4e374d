"""When the default model cannot be fetched and the stand-in answers, every front end says so in
one short sentence; the details (why, what to do) are there for whoever asks: /v1/models
carries both, the CLI prints the sentence and, with -v, the details."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from cli_runner import RecordingEngine, fake_jisu_serve, nothing_at_the_default_address, run_jisu
from fakes import LOCAL_URL, fake_runtime
from jisu.cli.serve import announce
from jisu.config import DEFAULT_MODEL_ALIAS
from jisu.models.registry import STANDIN_ALIAS, lookup
from jisu.models.resolve import standin_notice
from jisu.server.app import create_app

pytestmark = pytest.mark.usefixtures(nothing_at_the_default_address.__name__)

NOTE, DETAIL = standin_notice(lookup(DEFAULT_MODEL_ALIAS), lookup(STANDIN_ALIAS),
                              "cannot fetch model.gguf: no source reachable (hub: connection refused)")


def with_standin_notice(runtime):
    runtime.info = replace(runtime.info, fallback_note=NOTE, fallback_detail=DETAIL)
    return runtime


def test_the_note_is_one_short_sentence_and_the_detail_says_why_and_what_to_do():
    assert NOTE == "Using the stand-in model Qwen2.5-Coder-0.5B-Instruct: the default could not be fetched."
    assert len(NOTE) <= 90 and NOTE.endswith(".") and ". " not in NOTE, "one sentence, short enough for a phone"
    assert DETAIL.startswith("Qwen2.5-0.5B-Instruct could not be fetched (cannot fetch model.gguf")
    assert "HF_ENDPOINT" in DETAIL and "`jisu pull`" in DETAIL


def test_models_carries_the_note_and_its_detail():
    with with_standin_notice(fake_runtime()) as runtime, TestClient(create_app(runtime), base_url=LOCAL_URL) as client:
        entry = client.get("/v1/models").json()["data"][0]
    assert (entry["fallback_note"], entry["fallback_detail"]) == (NOTE, DETAIL)


def test_models_without_a_stand_in_has_neither():
    with fake_runtime() as runtime, TestClient(create_app(runtime), base_url=LOCAL_URL) as client:
        entry = client.get("/v1/models").json()["data"][0]
    assert entry["fallback_note"] is None and entry["fallback_detail"] is None


@pytest.fixture
def jisu(monkeypatch, capsys):
    return lambda *args: run_jisu(monkeypatch, capsys, *args)


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "-v"])
def test_ask_through_a_server_says_the_sentence_and_why_only_with_verbose(jisu, verbose):
    with fake_jisu_serve(RecordingEngine()) as (url, runtime):
        with_standin_notice(runtime)
        result = jisu("ask", "hi", "--url", url, *(["-v"] if verbose else []))
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert lines.count(f"jisu: {NOTE}") == 1
    assert (f"[why: {DETAIL}]" in lines) is verbose
    if not verbose:
        assert lines == [f"jisu: {NOTE}"], "one line and nothing else"


def test_ask_in_process_says_the_sentence(jisu, monkeypatch):
    monkeypatch.setattr("jisu.cli.ask.load_runtime", lambda *args, **kwargs: with_standin_notice(fake_runtime()))
    result = jisu("ask", "hi")
    assert result.code == 0 and result.err.splitlines() == [f"jisu: {NOTE}"]


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "-v"])
def test_serve_announces_the_sentence_and_why_only_with_verbose(capsys, verbose):
    with with_standin_notice(fake_runtime()) as runtime:
        announce(runtime.info, "127.0.0.1", 8080, None, False, verbose)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"jisu: {NOTE}"
    assert (f"jisu: why: {DETAIL}" in lines) is verbose
    assert "ready at http://127.0.0.1:8080/" in lines[-1]
