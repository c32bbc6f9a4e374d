"""`jisu ask` finds a running `jisu serve` and answers through it, or loads the model itself:
discovery, fallback, --url and key errors, what reaches the server, and exit codes. The server
is jisu's own app and uvicorn on the fake engine; "in-process" is the fake runtime."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from cli_runner import (RecordingEngine, fake_jisu_serve, foreign_http_server, nothing_at_the_default_address,
                        run_jisu)
from fakes import FakeEngine, fake_runtime
from jisu.cli.common import RuntimeFailure
from jisu.cli.discovery import kept_server_key
from jisu.cli.remote import RemoteBackend, client_key, refusal
from jisu.server.access import AccessPolicy
from jisu.types import ChatMessage, ContextOverflow, InvalidRequest, SamplingParams, TextDelta
from streams import wait_until, wait_until_scheduler_idle

pytestmark = pytest.mark.usefixtures(nothing_at_the_default_address.__name__)

ANSWER = "Hello from the fake model!"


@pytest.fixture
def engine():
    return RecordingEngine()


@pytest.fixture
def server(engine):
    with fake_jisu_serve(engine) as (url, _):
        yield url


@pytest.fixture
def jisu(monkeypatch, capsys):
    return lambda *args, stdin="": run_jisu(monkeypatch, capsys, *args, stdin=stdin)


@pytest.fixture
def in_process(monkeypatch):
    """What loading the model in-process gives in these tests: the fake runtime, counted."""
    loads: list[RecordingEngine] = []

    def load(*args, **kwargs):
        loads.append(RecordingEngine(answer=lambda prompt: "answered in-process"))
        return fake_runtime(loads[-1], parallel=1)

    monkeypatch.setattr("jisu.cli.ask.load_runtime", load)
    monkeypatch.setattr("jisu.cli.chat.load_runtime", load)
    return loads


@pytest.fixture
def never_in_process(monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("the model was loaded in-process")

    monkeypatch.setattr("jisu.cli.ask.load_runtime", load)


# ---- discovery and fallback ------------------------------------------------------------


def test_a_server_at_the_default_address_answers(jisu, server, monkeypatch, never_in_process):
    monkeypatch.setattr("jisu.cli.discovery.DEFAULT_URL", server)
    result = jisu("ask", "hi", "-v")
    assert result.code == 0, result.err
    assert result.out == ANSWER + "\n"
    assert f"answering through the jisu server at {server}: Fake-0.5B (q4_0)" in result.err
    assert "time to first token" in result.err and "tokens/s" in result.err, "-v figures come from the server"


def test_without_a_server_the_model_loads_in_process(jisu, in_process):
    result = jisu("ask", "hi", "-v")
    assert result.code == 0, result.err
    assert result.out == "answered in-process\n"
    assert len(in_process) == 1
    assert "no jisu server at http://127.0.0.1:" in result.err and "loading the model in-process" in result.err
    assert "connection refused" in result.err, "-v says why no server was used"


def test_the_fallback_is_silent_without_verbose(jisu, in_process):
    result = jisu("ask", "hi")
    assert (result.code, result.out, result.err) == (0, "answered in-process\n", "")


def test_something_else_at_the_default_address_is_not_a_server(jisu, monkeypatch, in_process):
    with foreign_http_server() as url:
        monkeypatch.setattr("jisu.cli.discovery.DEFAULT_URL", url)
        result = jisu("ask", "hi", "-v")
    assert result.code == 0 and result.out == "answered in-process\n"
    assert "not a jisu server" in result.err


def test_model_flags_mean_in_process_even_with_jisu_url_exported(jisu, server, monkeypatch, engine, in_process):
    monkeypatch.setenv("JISU_URL", server)
    result = jisu("ask", "hi", "--ctx-size", "1024")
    assert result.code == 0 and result.out == "answered in-process\n"
    assert engine.requests == [], "the server was not asked"


def test_an_explicit_url_answers_and_accepts_an_openai_base_url(jisu, server, never_in_process):
    for url in (server, server + "/", server + "/v1", server + "/v1/"):
        result = jisu("ask", "hi", "--url", url)
        assert (result.code, result.out) == (0, ANSWER + "\n"), (url, result.err)


def test_jisu_url_answers(jisu, server, monkeypatch, never_in_process):
    monkeypatch.setenv("JISU_URL", server)
    assert jisu("ask", "hi").out == ANSWER + "\n"


@pytest.mark.parametrize("how", ["--url", "JISU_URL"])
def test_an_explicit_url_that_does_not_answer_is_an_error(jisu, monkeypatch, never_in_process, how):
    url = "http://127.0.0.1:9"  # discard: nothing listens there
    args = ["ask", "hi"] + (["--url", url] if how == "--url" else [])
    if how == "JISU_URL":
        monkeypatch.setenv("JISU_URL", url)
    result = jisu(*args)
    assert result.code == 1, "a runtime failure, not a usage error, and never a silent fallback"
    assert result.error_line() == f"jisu: error: no jisu server answers at {url} (connection refused)"
    assert result.out == ""


def test_a_plain_ask_never_loads_the_conversation_store_even_when_it_fails():
    """`jisu ask` in a pipe starts fast: SQLite and the store load only with -c, --id or --save,
    and reporting another error does not load them either."""
    script = ("import sys\nfrom jisu.cli.main import main\n"
              "sys.argv = ['jisu', 'ask', 'hi', '--url', 'http://127.0.0.1:9']\n"
              "try:\n    main()\nexcept SystemExit as exited:\n    print(exited.code, 'sqlite3' in sys.modules)\n")
    ran = subprocess.run([sys.executable, "-c", script], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=60)
    assert ran.stdout.split() == ["1", "False"], ran.stderr


@pytest.mark.parametrize("args,fragment", [
    (["ask", "hi", "--url", "localhost:8080"], "'localhost:8080' is not an http:// or https:// address"),
    (["ask", "hi", "--url", "http://127.0.0.1:1", "--model", "x.gguf"], "--model is for a model loaded in-process"),
    (["ask", "hi", "--url", "http://127.0.0.1:1", "--threads", "2"], "--threads is for a model loaded in-process"),
    (["ask", "-x", "--json", "hi"], "-x prints a fenced code block"),
    (["ask", "hi", "--bogus"], "No such option"),
    (["chat", "--url", "ftp://example.com"], "is not an http:// or https:// address"),
])
def test_usage_errors_exit_2_before_anything_is_contacted(jisu, never_in_process, args, fragment):
    result = jisu(*args)
    assert result.code == 2
    assert fragment in result.error_line()


# ---- keys ---------------------------------------------------------------------------------

KEY = "s3cret-key-for-tests"


@pytest.fixture
def keyed_server(engine):
    with fake_jisu_serve(engine, AccessPolicy.build({KEY: "alice"})) as (url, _):
        yield url


def test_the_right_key_answers(jisu, keyed_server, monkeypatch):
    assert jisu("ask", "hi", "--url", keyed_server, "--api-key", KEY).out == ANSWER + "\n"
    monkeypatch.setenv("JISU_API_KEY", f"alice:{KEY}")  # as `jisu serve` reads the same variable
    assert jisu("ask", "hi", "--url", keyed_server).out == ANSWER + "\n"


def test_a_wrong_key_is_a_one_line_error_exit_1(jisu, keyed_server, engine):
    result = jisu("ask", "hi", "--url", keyed_server, "--api-key", "wrong-key-123")
    assert result.code == 1
    assert result.error_line() == f"jisu: error: the jisu server at {keyed_server} refused the API key (--api-key, JISU_API_KEY)"
    assert engine.requests == []


def test_a_missing_key_says_how_to_give_one(jisu, keyed_server, monkeypatch, never_in_process):
    monkeypatch.setattr("jisu.cli.discovery.DEFAULT_URL", keyed_server)
    result = jisu("ask", "hi")
    assert result.code == 1, "a server is there: loading a second model would not be what the user meant"
    assert "needs an API key: pass --api-key or set JISU_API_KEY" in result.error_line()


def test_the_key_jisu_serve_kept_on_this_machine_is_used_for_a_local_server(jisu, keyed_server, isolated_jisu_home):
    isolated_jisu_home.mkdir(parents=True, exist_ok=True)
    (isolated_jisu_home / "server-key").write_text(KEY + "\n")
    assert jisu("ask", "hi", "--url", keyed_server).out == ANSWER + "\n"


def test_the_kept_key_never_goes_to_another_host(isolated_jisu_home):
    isolated_jisu_home.mkdir(parents=True, exist_ok=True)
    (isolated_jisu_home / "server-key").write_text(KEY + "\n")
    assert kept_server_key("http://127.0.0.1:8080") == KEY
    assert kept_server_key("http://localhost:8080") == KEY
    assert kept_server_key("http://192.168.1.20:8080") is None
    assert kept_server_key("http://jisu.example:8080") is None


def test_client_key_reads_name_key_as_jisu_serve_does():
    assert client_key("alice:s3cret:with-colon") == "s3cret:with-colon"
    assert client_key("plainkey123") == "plainkey123"
    assert client_key("  ") is None and client_key(None) is None


# ---- what reaches the server ------------------------------------------------------------


def test_flags_system_prompt_and_piped_chinese_reach_the_server(jisu, server, engine):
    engine.answer = lambda prompt: "你好，世界！"
    result = jisu("ask", "翻译成英文：", "--url", server, "--system", "你是翻译。", "--temperature", "0.3",
                  "--top-p", "0.5", "--top-k", "7", "--max-tokens", "100", "--seed", "42", stdin="春眠不觉晓\n")
    assert result.code == 0, result.err
    assert result.out == "你好，世界！\n"
    [(params, prompt)] = engine.requests
    assert (params.temperature, params.top_p, params.top_k, params.max_tokens, params.seed) == (0.3, 0.5, 7, 100, 42)
    # (the fake's detokenizer leaves out ChatML's control tokens)
    assert prompt.startswith("system\n你是翻译。\n")
    assert "\nuser\n翻译成英文：\n\n春眠不觉晓\n\nassistant\n" in prompt, "the question, then the piped text"


def test_max_tokens_cuts_the_answer_on_the_server(jisu, server):
    result = jisu("ask", "hi", "--url", server, "--max-tokens", "5")
    assert result.out == ANSWER[:5] + "\n"


def test_json_goes_to_the_server_as_a_response_format(jisu, server, engine):
    engine.answer = lambda prompt: '{"ok": true}'
    result = jisu("ask", "hi", "--url", server, "--json")
    assert result.code == 0 and result.out == '{"ok": true}\n'
    assert engine.grammars_checked, "the server compiled the JSON grammar"


def test_a_prompt_too_long_for_the_server_is_a_usage_error(jisu, server):
    result = jisu("ask", "Summarise:", "--url", server, stdin="北京 " * 1000)
    assert result.code == 2, "as in-process: the user can shorten the prompt"
    assert "context is 2048 tokens, but the prompt has" in result.error_line()


def test_an_empty_question_is_a_usage_error_before_any_server_is_contacted(jisu, never_in_process):
    assert jisu("ask").code == 2


# ---- runtime failures: the server refuses or goes away ----------------------------------


def test_a_stream_cut_mid_answer_exits_1(jisu):
    with foreign_http_server(jisu_like=True, stream=['data: {"choices": [{"delta": {"content": "Hal"}}]}']) as url:
        result = jisu("ask", "hi", "--url", url)
    assert result.code == 1
    assert result.out.startswith("Hal"), "what arrived was shown"
    assert result.error_line() == f"jisu: error: lost the connection to the jisu server at {url} mid-answer (the stream ended early)"


def test_an_error_event_mid_answer_exits_1(jisu):
    error = {"error": {"message": "engine error: boom", "type": "server_error", "param": None, "code": "internal_error"}}
    stream = ['data: {"choices": [{"delta": {"content": "Hal"}}]}', "data: " + json.dumps(error), "data: [DONE]"]
    with foreign_http_server(jisu_like=True, stream=stream) as url:
        result = jisu("ask", "hi", "--url", url)
    assert result.code == 1
    assert result.error_line() == "jisu: error: engine error: boom"


@pytest.mark.parametrize("status,body,expected", [
    (503, {"error": {"message": "The server is busy (64 requests waiting); retry shortly."}},
     (RuntimeFailure, "cannot answer now: The server is busy")),
    (403, {"error": {"message": "Host not allowed"}}, (RuntimeFailure, "refused this client: Host not allowed")),
    (500, {"error": {"message": "Internal error: KeyError"}}, (RuntimeFailure, "answered 500: Internal error")),
    (400, {"error": {"message": "Invalid 'temperature'", "param": "temperature"}}, (InvalidRequest, "Invalid")),
    (413, {"error": {"message": "Request body too large"}}, (InvalidRequest, "too large")),
    (502, {}, (RuntimeFailure, "answered 502: HTTP 502")),
])
def test_refusals_map_to_usage_errors_or_runtime_failures(status, body, expected):
    error = refusal(status, body, "http://h:1", "key-123456")
    kind, fragment = expected
    assert isinstance(error, kind) and fragment in str(error), str(error)


def test_context_overflow_from_the_server_keeps_its_numbers():
    body = {"error": {"message": "...", "code": "context_length_exceeded", "param": "messages",
                      "prompt_tokens": 3000, "max_tokens": None, "context_size": 2048}}
    error = refusal(400, body, "http://h:1", None)
    assert isinstance(error, ContextOverflow)
    assert (error.prompt_tokens, error.context_size) == (3000, 2048)


def test_closing_the_answer_cancels_it_on_the_server():
    engine = FakeEngine(answer=lambda prompt: "x" * 1500, step_delay_s=0.01)
    with fake_jisu_serve(engine) as (url, runtime):
        backend = RemoteBackend.connect(url, None)
        events = backend.answer([ChatMessage("user", "hi")], SamplingParams())
        next(event for event in events if isinstance(event, TextDelta))
        wait_until(lambda: runtime.stats()["running"] == 1, "the answer is running")
        events.close()  # what Ctrl-C does (print_answer closes the events)
        wait_until_scheduler_idle(runtime)
        steps = len(engine.batches)
        assert steps < 1000, "stopped long before its 1,500 tokens"
        backend.close()


def test_ctrl_c_stops_jisu_ask_and_the_answer_on_the_server():
    engine = FakeEngine(answer=lambda prompt: "word " * 2000, step_delay_s=0.01)
    with fake_jisu_serve(engine) as (url, runtime):
        process = subprocess.Popen([sys.executable, "-m", "jisu.cli", "ask", "hi", "--url", url],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        assert process.stdout.read(10) == "word word ", "the answer streams"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        wait_until_scheduler_idle(runtime)
        assert len(engine.batches) < 10_000, "the server stopped generating when the client left"


# ---- the CLI reads back what the server writes ----------------------------------------------


def test_the_cli_reads_every_event_the_server_streams():
    from jisu.cli.remote import ChunkReader
    from jisu.server.protocol import ChunkWriter
    from jisu.server.sse import ChunkStream
    from jisu.types import Failed, Finished, FinishReason, PrefillProgress, Queued, Timings, Usage

    timings = Timings(queued_s=0.5, time_to_first_token_s=1.25, prefill_s=0.75, decode_s=2.0, completion_tokens=3)
    sent = [Queued(2), PrefillProgress(64, 128), TextDelta("你好", []), TextDelta("，世界", []),
            Finished(FinishReason.LENGTH, Usage(128, 3, cached_tokens=60), timings)]
    stream = ChunkStream(ChunkWriter("m"), [], include_usage=True)
    lines = [line for event in sent for block in stream.read(event) for line in block.splitlines()]
    reader = ChunkReader()
    got = [event for line in [*stream.opening()[0].splitlines(), *lines, "data: [DONE]"]
           for event in reader.read_line(line)]
    assert got == sent and reader.done

    failing = ChunkReader()
    [failure_line] = ChunkStream(ChunkWriter("m"), [], include_usage=True).read(Failed("engine error: boom"))
    assert failing.read_line(failure_line.strip()) == [Failed("engine error: boom", "internal_error")]
