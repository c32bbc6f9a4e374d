"""system_fingerprint: the model file's hash (remembered, never taken per request) and its
format, in every chat and text completion, streamed or whole."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from fastapi.testclient import TestClient

from fakes import FAKE_MODEL_SHA256, LOCAL_URL, fake_runtime
from jisu.models import digest
from jisu.models.digest import DIGESTS_FILE, file_sha256
from jisu.runtime import ModelInfo
from jisu.server.app import create_app
from streams import DONE, sse_events

FAKE_FINGERPRINT = f"fp_{FAKE_MODEL_SHA256[:10]}_q4_0"


@pytest.fixture
def counted_hashing(monkeypatch):
    """How often a file is really read and hashed."""
    calls = []
    real = digest.sha256_of

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(digest, "sha256_of", counting)
    return calls


def test_a_file_is_hashed_once_then_remembered(tmp_path, counted_hashing):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF weights")
    expected = hashlib.sha256(b"GGUF weights").hexdigest()
    assert file_sha256(model, tmp_path / "home") == expected
    assert file_sha256(model, tmp_path / "home") == expected
    assert len(counted_hashing) == 1, "a second start on the same file reads no weights"
    assert json.loads((tmp_path / "home" / DIGESTS_FILE).read_text())[str(model.resolve())]["sha256"] == expected


def test_a_changed_file_is_hashed_again(tmp_path, counted_hashing):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"old weights")
    file_sha256(model, tmp_path)
    model.write_bytes(b"new weights!")
    assert file_sha256(model, tmp_path) == hashlib.sha256(b"new weights!").hexdigest()
    same_size = b"NEW weights!"
    model.write_bytes(same_size)
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    assert file_sha256(model, tmp_path) == hashlib.sha256(same_size).hexdigest(), "same size, newer file"
    assert len(counted_hashing) == 3


@pytest.mark.parametrize("stored", ["{not json", "[1, 2]", '{"%s": "a string"}'])
def test_a_damaged_digest_book_only_means_hashing_again(tmp_path, stored):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"weights")
    (tmp_path / DIGESTS_FILE).write_text(stored.replace("%s", str(model.resolve())))
    assert file_sha256(model, tmp_path) == hashlib.sha256(b"weights").hexdigest()


def test_a_home_that_cannot_be_written_only_means_hashing_again(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"weights")
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("a file where the home should be")
    assert file_sha256(model, not_a_folder) == hashlib.sha256(b"weights").hexdigest()


@pytest.mark.parametrize("quantization,sha256,expected", [
    ("iq4_nl", "a84db702bbf6" + "0" * 52, "fp_a84db702bb_iq4_nl"),
    ("Q4_K - Medium", "1d9614638d18" + "0" * 52, "fp_1d9614638d_q4_k_medium"),  # llama.cpp's own words
    ("q8_0", "", "fp_unhashed_q8_0"),
])
def test_fingerprint_names_hash_and_format(quantization, sha256, expected):
    info = ModelInfo(name="m", id="m", quantization=quantization, context_size=1, path="/m.gguf",
                     fallback_note=None, sha256=sha256)
    assert info.fingerprint == expected


@pytest.fixture
def client():
    with fake_runtime(parallel=1) as runtime:
        with TestClient(create_app(runtime), base_url=LOCAL_URL) as test_client:
            yield test_client


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def test_whole_answers_carry_the_fingerprint(client):
    assert client.post("/v1/chat/completions", json=CHAT).json()["system_fingerprint"] == FAKE_FINGERPRINT
    completion = client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 4}).json()
    assert completion["system_fingerprint"] == FAKE_FINGERPRINT


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 4, "stream": True}),
])
def test_every_streamed_chunk_carries_the_fingerprint(client, path, body):
    data, _ = sse_events(client.post(path, json=body).text)
    assert data[-1] == DONE and len(data) > 3
    assert [chunk["system_fingerprint"] for chunk in data[:-1]] == [FAKE_FINGERPRINT] * (len(data) - 1)
