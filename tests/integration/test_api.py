"""The OpenAI API of a live `jisu serve` on the real model, driven by the official client."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from websockets.sync.client import connect

from jisu.config import DEFAULT_MODEL_ALIAS
from live_server import metric_value, running_server, served_model
from streams import DONE, chunk_content, receive_until, sse_events, sse_payload, wait_until_server_idle, ws_text


@pytest.fixture(scope="module")
def server(model_path):
    with running_server(model_path, "--ctx-size", "4096", "--parallel", "4") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0)


@pytest.fixture(scope="module")
def model(server) -> str:
    """The name the server answers with: the stand-in's alias, or JISU_TEST_MODEL's."""
    return served_model(server)


def test_models_lists_the_real_model(client, standin_model):
    models = client.models.list().data
    assert [m.id for m in models] == [standin_model.alias or standin_model.path.name]
    extra = models[0].model_extra
    if standin_model.alias:  # a known model is named as the catalogue names it
        assert extra["name"] == standin_model.display_name and extra["quantization"] == standin_model.quant
    assert extra["name"] and extra["quantization"] and extra["context_size"] == 4096


def test_non_streaming_chat(client, model):
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is 2+2? Answer with a number."}],
        temperature=0, max_tokens=16)
    assert "4" in response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens > 10 and response.usage.completion_tokens > 0
    timings = response.model_extra["timings"]
    assert timings["time_to_first_token_ms"] > 0 and timings["completion_tokens"] == response.usage.completion_tokens


def test_streaming_chat_with_usage(client, model):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "用一句话介绍上海。"}],
        temperature=0, max_tokens=40, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and "\ufffd" not in text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 1
    assert finals[0].model_extra["timings"]["tokens_per_second"] > 0


def test_stream_and_non_stream_give_the_same_greedy_answer(client, model):
    messages = [{"role": "user", "content": "List three fruits."}]
    whole = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=30)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=30, stream=True) if c.choices)
    assert streamed == whole.choices[0].message.content


def test_seed_makes_sampling_repeatable(client, model):
    def ask(seed):
        return client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Invent a name for a cat."}],
            temperature=1.0, seed=seed, max_tokens=20).choices[0].message.content

    assert ask(42) == ask(42)


def test_stop_string(client, model):
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Count from 1 to 10 separated by commas."}],
        temperature=0, max_tokens=60, stop=["5"])
    text = response.choices[0].message.content
    assert "4" in text and "5" not in text and response.choices[0].finish_reason == "stop"


def test_raw_sse_ends_with_done(server):
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}) as response:
        payloads, _ = sse_events(response.iter_lines())
    assert payloads[-1] == DONE
    assert payloads[-2]["choices"][0]["finish_reason"] == "length"


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


@pytest.mark.parametrize("name", ["gpt-4o-mini", DEFAULT_MODEL_ALIAS, pytest.param(None, id="served")])
def test_any_model_name_is_answered_by_the_served_model(client, model, name):
    """Apps send fixed names; the README's example names the real model even when the
    stand-in answers. The response says which model it was."""
    response = client.chat.completions.create(model=name or model, messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=4)
    assert response.model == model and response.choices[0].message.content


def test_logit_bias_steers_the_real_sampler(client, model):
    question = [{"role": "user", "content": "Say one word."}]
    free = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=3)
    # Qwen's byte-level vocabulary starts at "!", so "0" (byte 48) is token 15.
    forced = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=3,
                                            logit_bias={"15": 100})  # token 15 is "0"
    assert forced.choices[0].message.content == "000", forced.choices[0].message.content
    assert free.choices[0].message.content != "000"


def test_openai_client_raises_typed_errors(client, model):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "长城 " * 3000}])
    assert error.value.code == "context_length_exceeded"


def test_malformed_json(server):
    response = httpx.post(f"{server}/v1/chat/completions", content=b"{oops",
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


CANCELLED = 'jisu_requests_total{endpoint="chat",status="cancelled"}'


def test_client_disconnect_cancels_generation(server):
    cancelled_before = metric_value(server, CANCELLED)
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "Write a 2000-word essay about rivers."}],
            "max_tokens": 2000, "ignore_eos": True, "stream": True}) as response:
        for line in response.iter_lines():
            if chunk_content(sse_payload(line) or ""):
                break  # the answer has started; now hang up
    wait_until_server_idle(server)
    assert metric_value(server, CANCELLED) == cancelled_before + 1, "the answer ended because its client left"


def test_websocket_round_trip_and_cancel(server):
    with connect(server.replace("http", "ws") + "/v1/ws") as socket:
        socket.send(json.dumps({"type": "chat", "temperature": 0, "max_tokens": 12,
                                "messages": [{"role": "user", "content": "Say hello."}]}))
        events = receive_until(socket, timeout=120)
        assert events[-1]["type"] == "done", events[-1]
        assert ws_text(events)
        assert events[-1]["timings"]["time_to_first_token_ms"] > 0

        socket.send(json.dumps({"type": "chat", "max_tokens": 2000,
                                "messages": [{"role": "user", "content": "Write a long story."}]}))
        receive_until(socket, ("token",), timeout=120)
        socket.send(json.dumps({"type": "cancel"}))
        event = receive_until(socket, ("done",), timeout=120)[-1]
        assert event["finish_reason"] == "cancelled"
    wait_until_server_idle(server)
