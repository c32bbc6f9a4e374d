"""The OpenAI API of a live `jisu serve` on the real model, driven by the official client."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from websockets.sync.client import connect

from live_server import running_server


@pytest.fixture(scope="module")
def server(model_path):
    with running_server(model_path, "--ctx-size", "4096", "--parallel", "4") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0)


MODEL = "qwen2.5-coder-0.5b-instruct"


def test_models_lists_the_real_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    extra = models[0].model_extra
    assert extra["name"] == "Qwen2.5-Coder-0.5B-Instruct"
    assert extra["quantization"] == "iq4_nl" and extra["context_size"] == 4096


def test_non_streaming_chat(client):
    response = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is 2+2? Answer with a number."}],
        temperature=0, max_tokens=16)
    assert "4" in response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens > 10 and response.usage.completion_tokens > 0
    timings = response.model_extra["timings"]
    assert timings["time_to_first_token_ms"] > 0 and timings["completion_tokens"] == response.usage.completion_tokens


def test_streaming_chat_with_usage(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "用一句话介绍上海。"}],
        temperature=0, max_tokens=40, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and "\ufffd" not in text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 1
    assert finals[0].model_extra["timings"]["tokens_per_second"] > 0


def test_stream_and_non_stream_give_the_same_greedy_answer(client):
    messages = [{"role": "user", "content": "List three fruits."}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=30)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=30, stream=True) if c.choices)
    assert streamed == whole.choices[0].message.content


def test_seed_makes_sampling_repeatable(client):
    def ask(seed):
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Invent a name for a cat."}],
            temperature=1.0, seed=seed, max_tokens=20).choices[0].message.content

    assert ask(42) == ask(42)


def test_stop_string(client):
    response = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count from 1 to 10 separated by commas."}],
        temperature=0, max_tokens=60, stop=["5"])
    text = response.choices[0].message.content
    assert "4" in text and "5" not in text and response.choices[0].finish_reason == "stop"


def test_raw_sse_ends_with_done(server):
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in lines[:-1] if line.startswith("data: ")]
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "body,status,param,code",
    [
        ({"messages": []}, 400, "messages", None),
        ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role", None),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, 400, "temperature", None),
        ({"messages": [{"role": "user", "content": "x"}], "n": 3}, 400, "n", None),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "stream", None),
        ({"messages": [{"role": "user", "content": "长城 " * 3000}]}, 400, "messages", "context_length_exceeded"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}, 400, "messages",
         "context_length_exceeded"),
    ],
)
def test_errors_reach_the_client_in_openai_shape(server, body, status, param, code):
    response = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"]
    if code:
        assert error["code"] == code


@pytest.mark.parametrize("name", ["gpt-4o-mini", "qwen2.5-0.5b-instruct", MODEL])
def test_any_model_name_is_answered_by_the_served_model(client, name):
    """Apps send fixed names; the README's example names the real model even when the
    stand-in answers. The response says which model it was."""
    response = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=4)
    assert response.model == MODEL and response.choices[0].message.content


def test_logit_bias_steers_the_real_sampler(client):
    question = [{"role": "user", "content": "Say one word."}]
    free = client.chat.completions.create(model=MODEL, messages=question, temperature=0, max_tokens=3)
    # Qwen's byte-level vocabulary starts at "!", so "0" (byte 48) is token 15.
    forced = client.chat.completions.create(model=MODEL, messages=question, temperature=0, max_tokens=3,
                                            logit_bias={"15": 100})  # token 15 is "0"
    assert forced.choices[0].message.content == "000", forced.choices[0].message.content
    assert free.choices[0].message.content != "000"


def test_openai_client_raises_typed_errors(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "长城 " * 3000}])
    assert error.value.code == "context_length_exceeded"


def test_malformed_json(server):
    response = httpx.post(f"{server}/v1/chat/completions", content=b"{oops",
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def engine_idle(server) -> bool:
    metrics = httpx.get(f"{server}/metrics").text
    return "jisu_requests_running 0.0" in metrics and "jisu_requests_queued 0.0" in metrics


def wait_idle(server, timeout=10.0) -> float:
    started = time.monotonic()
    while not engine_idle(server):
        assert time.monotonic() - started < timeout, "the engine kept generating for a client that left"
        time.sleep(0.05)
    return time.monotonic() - started


def test_client_disconnect_cancels_generation(server):
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "Write a 2000-word essay about rivers."}],
            "max_tokens": 2000, "stream": True}) as response:
        for line in response.iter_lines():
            if '"content"' in line and '"role"' not in line:
                break  # the answer has started; now hang up
    assert wait_idle(server) < 5


def test_websocket_round_trip_and_cancel(server):
    with connect(server.replace("http", "ws") + "/v1/ws") as socket:
        receive = lambda: json.loads(socket.recv(timeout=120))  # noqa: E731
        socket.send(json.dumps({"type": "chat", "temperature": 0, "max_tokens": 12,
                                "messages": [{"role": "user", "content": "Say hello."}]}))
        events = []
        while not events or events[-1]["type"] not in ("done", "error"):
            events.append(receive())
        assert events[-1]["type"] == "done", events[-1]
        assert "".join(e["text"] for e in events if e["type"] == "token")
        assert events[-1]["timings"]["time_to_first_token_ms"] > 0

        socket.send(json.dumps({"type": "chat", "max_tokens": 2000,
                                "messages": [{"role": "user", "content": "Write a long story."}]}))
        event = receive()
        while event["type"] != "token":
            event = receive()
        socket.send(json.dumps({"type": "cancel"}))
        while event["type"] != "done":
            event = receive()
        assert event["finish_reason"] == "cancelled"
    assert engine_idle(server)
