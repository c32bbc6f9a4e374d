"""The HTTP and WebSocket layer on the fake engine: wire format and every error shape."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, LOCAL_WS, FakeEngine, fake_runtime
from jisu.server.app import create_app
from jisu.types import ChatMessage, SamplingParams
from streams import (DONE, answer_text, chunk_content, receive_until, scheduler_idle, sse_events, wait_until,
                     ws_text)


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def client(engine):
    with fake_runtime(engine, parallel=2, max_queue=4) as runtime:
        with TestClient(create_app(runtime), base_url=LOCAL_URL) as test_client:
            yield test_client


def chat(**overrides):
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    body.update(overrides)
    return body


def assert_openai_error(response, status: int, param: str | None = None, code: str | None = None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


def test_non_streaming_completion_has_usage_and_timings(client):
    response = client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello from the fake model!"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == len("Hello from the fake model!")
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    timings = body["timings"]
    assert timings["completion_tokens"] == body["usage"]["completion_tokens"]
    assert timings["tokens_per_second"] > 0, "25 tokens were decoded after the first: a rate exists"
    assert timings["queued_ms"] <= timings["time_to_first_token_ms"], "waiting is part of the first token's time"


def test_stream_follows_openai_chunk_format(client):
    response = client.post("/v1/chat/completions",
                           json=chat(stream=True, stream_options={"include_usage": True}))
    assert response.headers["content-type"].startswith("text/event-stream")
    data, _ = sse_events(response.text)
    assert data[-1] == DONE
    chunks = data[:-1]
    assert len({c["id"] for c in chunks}) == 1, "every chunk carries the same id"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c for c in chunks[1:] if chunk_content(c)]
    assert answer_text(content) == "Hello from the fake model!"
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    final = chunks[-2]
    assert final["choices"][0]["finish_reason"] == "stop" and final["choices"][0]["delta"] == {}
    assert "tokens_per_second" in final["timings"]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 26


def test_stream_without_include_usage_has_no_usage_chunk(client):
    data, _ = sse_events(client.post("/v1/chat/completions", json=chat(stream=True)).text)
    assert all("usage" not in c for c in data[:-1])
    assert data[-2]["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_gives_finish_reason_length(client):
    body = client.post("/v1/chat/completions", json=chat(max_completion_tokens=3)).json()
    assert body["choices"][0]["message"]["content"] == "Hel"
    assert body["choices"][0]["finish_reason"] == "length"


def test_stop_accepts_string_or_list(client):
    for stop in ("fake", ["zzz", "fake"]):
        body = client.post("/v1/chat/completions", json=chat(stop=stop)).json()
        assert body["choices"][0]["message"]["content"] == "Hello from the "


def test_unknown_fields_are_refused_as_openai_refuses_them(client):
    # A field jisu does not know did nothing; saying so beats an answer that silently ignored it.
    assert client.post("/v1/chat/completions", json=chat(user="x", logit_bias={})).status_code == 200
    response = client.post("/v1/chat/completions", json=chat(user="x", logit_bias={}, whatever=1))
    assert_openai_error(response, 400, param="whatever", code="unrecognized_request_argument")


def test_text_completion(client):
    body = client.post("/v1/completions", json={"prompt": "Once upon", "max_tokens": 5, "temperature": 0}).json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "Hello"


def test_malformed_json_is_400(client):
    response = client.post("/v1/chat/completions", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert_openai_error(response, 400, code="invalid_json")


@pytest.mark.parametrize(
    "overrides,param",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"seed": -1}, "seed"),
        ({"stop": ["x"] * 20}, "stop"),
        ({"n": 2}, "n"),
        ({"messages": "hello"}, "messages"),
    ],
)
def test_bad_fields_are_400_naming_the_field(client, overrides, param):
    assert_openai_error(client.post("/v1/chat/completions", json=chat(**overrides)), 400, param=param)


def test_missing_messages_is_400(client):
    assert_openai_error(client.post("/v1/chat/completions", json={"model": "fake-model"}), 400, param="messages")


def test_context_overflow_is_400_with_both_counts(client):
    response = client.post("/v1/chat/completions",
                           json=chat(messages=[{"role": "user", "content": "x" * 1900}], max_tokens=500))
    error = assert_openai_error(response, 400, code="context_length_exceeded")
    assert error["context_size"] == 2048 and error["prompt_tokens"] > 1900 and error["max_tokens"] == 500
    assert "2048" in error["message"] and str(error["prompt_tokens"]) in error["message"]


def test_any_model_name_is_answered_by_the_served_model(client):
    # Clients send fixed names (gpt-4o-mini, an app's default): a one-model server answers
    # with its model and says which, as llama-server and LM Studio do.
    for name in ("gpt-4o-mini", "qwen2.5-0.5b-instruct", ""):
        response = client.post("/v1/chat/completions", json=chat(model=name))
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "fake-model"


def test_model_name_is_accepted_case_insensitively(client):
    assert client.post("/v1/chat/completions", json=chat(model="FAKE-0.5B")).status_code == 200


def test_unknown_route_and_wrong_method_are_openai_shaped(client):
    assert_openai_error(client.get("/v1/nothing"), 404)
    assert_openai_error(client.get("/v1/chat/completions"), 405)


def test_error_after_stream_started_is_an_error_event(engine, client):
    engine.fail_on_step = 4
    data, _ = sse_events(client.post("/v1/chat/completions", json=chat(stream=True)).text)
    assert data[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "error" in data[-2] and "simulated engine failure" in data[-2]["error"]["message"]
    assert data[-1] == DONE, "the stream still ends properly, so clients do not wait for more"


def test_queue_overflow_is_503_with_retry_after(engine):
    engine.step_delay_s = 0.05
    engine.answer = lambda p: "slow " * 40
    with fake_runtime(engine, parallel=1, max_queue=0) as runtime:
        with TestClient(create_app(runtime), base_url=LOCAL_URL) as client:
            first = threading.Thread(target=client.post, args=("/v1/chat/completions",), kwargs={"json": chat()})
            first.start()
            wait_until(lambda: runtime.stats()["running"] == 1, "the first request took the only slot")
            response = client.post("/v1/chat/completions", json=chat())
            first.join()
    assert_openai_error(response, 503, code="server_busy")
    assert response.headers["retry-after"].isdigit()


@pytest.mark.parametrize("stream", [False, True])
def test_full_queue_is_503_before_any_byte_and_counted(engine, stream):
    """A refused streaming request must not start a 200 stream: the openai client would see
    an empty answer and no error."""
    engine.step_delay_s = 0.02
    engine.answer = lambda p: "slow " * 200
    with fake_runtime(engine, parallel=1, max_queue=0) as runtime:
        with TestClient(create_app(runtime), base_url=LOCAL_URL) as client:
            first = runtime.start(runtime.prepare_chat([ChatMessage("user", "hi")], SamplingParams()), lambda e: None)
            response = client.post("/v1/chat/completions", json=chat(stream=stream))
            first.cancel()
            metrics = client.get("/metrics").text
    assert_openai_error(response, 503, code="server_busy")
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["retry-after"].isdigit()
    assert 'jisu_refusals_total{reason="server_busy"} 1.0' in metrics
    assert 'jisu_requests_total{endpoint="chat",status="503"} 1.0' in metrics


def test_logit_bias_reaches_the_sampler(engine, client):
    seen = []
    original = engine.new_sampler
    engine.new_sampler = lambda params, tokens: seen.append(params.logit_bias) or original(params, tokens)
    assert client.post("/v1/chat/completions", json=chat(logit_bias={"65": 5.5, "7": -100})).status_code == 200
    assert seen == [{65: 5.5, 7: -100.0}]


def test_models_health_and_metrics(client):
    models = client.get("/v1/models").json()
    entry = models["data"][0]
    assert entry["id"] == "fake-model" and entry["name"] == "Fake-0.5B"
    assert entry["quantization"] == "q4_0" and entry["context_size"] == 2048
    assert client.get("/health").json()["status"] == "ok"
    client.post("/v1/chat/completions", json=chat())
    metrics = client.get("/metrics").text
    assert 'jisu_requests_total{endpoint="chat",status="ok"} 1.0' in metrics
    assert "jisu_time_to_first_token_seconds_bucket" in metrics
    assert "jisu_requests_running 0.0" in metrics and "jisu_requests_queued 0.0" in metrics
    assert "jisu_completion_tokens_total 26.0" in metrics


def test_websocket_round_trip(client):
    with client.websocket_connect(LOCAL_WS) as socket:
        socket.send_json({"type": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})
        events = receive_until(socket)
        done = events[-1]
        assert done["type"] == "done", done
        assert ws_text(events) == "Hello from the fake model!"
        assert done["finish_reason"] == "stop" and done["usage"]["completion_tokens"] == 26
        assert "tokens_per_second" in done["timings"]


def test_websocket_cancel_stops_the_answer(engine, client):
    engine.step_delay_s = 0.01
    engine.answer = lambda p: "word " * 200
    with client.websocket_connect(LOCAL_WS) as socket:
        socket.send_json({"type": "chat", "messages": [{"role": "user", "content": "long"}]})
        before = receive_until(socket, ("token", "done", "error"))
        assert [e["type"] for e in before[:-1]] == ["progress"] * (len(before) - 1)
        assert before[-1]["type"] == "token", before[-1]
        socket.send_json({"type": "cancel"})
        after = receive_until(socket)
        assert all(e["type"] == "token" for e in after[:-1]), after[:-1]
        event = after[-1]
        assert event["type"] == "done" and event["finish_reason"] == "cancelled"
        assert 0 < event["usage"]["completion_tokens"] < 200
    runtime = client.app.state.serving.runtime
    assert scheduler_idle(runtime), runtime.stats()


def test_websocket_errors_keep_the_socket_open(client):
    with client.websocket_connect(LOCAL_WS) as socket:
        socket.send_text("{broken")
        assert socket.receive_json()["error"]["code"] == "invalid_json"
        socket.send_json({"type": "chat", "messages": []})
        assert socket.receive_json()["error"]["param"] == "messages"
        socket.send_json({"type": "chat", "messages": [{"role": "user", "content": "x" * 3000}]})
        assert socket.receive_json()["error"]["code"] == "context_length_exceeded"
        socket.send_json({"type": "dance"})
        assert socket.receive_json()["error"]["param"] == "type"
        socket.send_json({"type": "chat", "messages": [{"role": "user", "content": "hi"}]})
        done = receive_until(socket)[-1]
        assert done["type"] == "done" and done["finish_reason"] == "stop"
