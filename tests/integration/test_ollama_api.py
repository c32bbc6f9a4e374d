"""Ollama's API of a live `jisu serve` on the real model, driven by Ollama's official Python client."""

from __future__ import annotations

import json

import httpx
import jsonschema
import ollama
import pytest

from live_server import metric_value, running_server, served_model
from streams import wait_until_server_idle

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 40},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 5}},
    "required": ["name", "age", "languages"], "additionalProperties": False}
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def server(model_path):
    with running_server(model_path, "--ctx-size", "4096", "--parallel", "4", name="ollama") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server, timeout=300)


@pytest.fixture(scope="module")
def model(server) -> str:
    """The name the server answers with: the stand-in's alias, or JISU_TEST_MODEL's."""
    return served_model(server)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_list_shows_the_real_model(client, model, standin_model):
    models = client.list().models
    assert [m.model for m in models] == [model]
    details = models[0].details
    assert details.family == "qwen2" and details.format == "gguf"
    if standin_model.alias:  # a known model: its GGUF says how big it is
        assert details.parameter_size == "0.5B" and details.quantization_level == standin_model.quant.upper()
    assert models[0].size == standin_model.path.stat().st_size


def test_show_and_ps(client, model):
    shown = client.show(model)
    assert "tools" in shown.capabilities and "completion" in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "qwen2"
    assert shown.modelinfo["qwen2.context_length"] == 4096, "the context jisu serves, not the trained one"
    running = client.ps().models
    assert [m.model for m in running] == [model] and running[0].context_length == 4096


def test_chat_without_streaming(client, model):
    reply = client.chat(model=model, messages=ask("What is 2+2? Answer with a number."), stream=False,
                        options={**GREEDY, "num_predict": 16})
    assert "4" in reply.message.content and reply.message.role == "assistant"
    assert reply.done and reply.done_reason == "stop"
    assert reply.prompt_eval_count > 10 and reply.eval_count > 0
    assert reply.eval_duration > 0 and reply.total_duration >= reply.eval_duration


def test_chat_streaming_gives_the_same_greedy_answer(client, model):
    options = {**GREEDY, "num_predict": 30}
    whole = client.chat(model=model, messages=ask("List three fruits."), options=options)
    pieces = list(client.chat(model=model, messages=ask("List three fruits."), options=options, stream=True))
    text = "".join(piece.message.content for piece in pieces)
    assert text == whole.message.content and text and "\ufffd" not in text
    assert [piece.done for piece in pieces] == [False] * (len(pieces) - 1) + [True]
    assert pieces[-1].done_reason in ("stop", "length") and pieces[-1].eval_count == whole.eval_count


def test_chat_in_chinese_streams_whole_characters(client, model):
    pieces = list(client.chat(model="qwen2.5:0.5b", messages=ask("用一句话介绍上海。"), stream=True,
                              options={**GREEDY, "num_predict": 40}))
    assert all(piece.model == model for piece in pieces), "any name is answered by the served model"
    text = "".join(piece.message.content for piece in pieces)
    assert text and "\ufffd" not in text


def test_generate_with_system_and_raw(client, model):
    reply = client.generate(model=model, prompt="What is the capital of France? One word.",
                            system="Answer in English.", options={**GREEDY, "num_predict": 10})
    assert "Paris" in reply.response and reply.done
    raw = client.generate(model=model, raw=True, options={**GREEDY, "num_predict": 10},
                          prompt="<|im_start|>user\nWhat is the capital of France? One word.<|im_end|>\n"
                                 "<|im_start|>assistant\n")
    assert "Paris" in raw.response, "a raw prompt in the model's own markers is read as the template would write it"


def test_generate_num_predict_ends_with_length(client, model):
    reply = client.generate(model=model, prompt="Write a long story about a river.",
                            options={**GREEDY, "num_predict": 5})
    assert reply.done_reason == "length" and reply.eval_count == 5


def test_format_json_schema_validates(client, model):
    for prompt in ("Describe a software engineer from Shanghai.", "介绍一位年轻的画家。"):
        reply = client.chat(model=model, messages=ask(prompt), format=PERSON,
                            options={"temperature": 0.7, "seed": 7, "num_predict": 300})
        assert reply.done_reason == "stop", reply.message.content
        jsonschema.validate(json.loads(reply.message.content), PERSON)


def test_format_json_is_an_object(client, model):
    reply = client.generate(model=model, prompt="Give the colors of the sky at noon and at dusk as JSON.",
                            format="json", options={**GREEDY, "num_predict": 200})
    assert isinstance(json.loads(reply.response), dict)


def test_the_model_decides_to_call_a_tool_and_reads_its_result(client, model):
    messages = ask("What is the weather like in Paris right now?")
    reply = client.chat(model=model, messages=messages, tools=[WEATHER_TOOL], options=GREEDY)
    calls = reply.message.tool_calls
    assert calls and calls[0].function.name == "get_weather", reply.message
    arguments = calls[0].function.arguments
    assert isinstance(arguments, dict) and "paris" in arguments["city"].lower(), "arguments come as an object"
    streamed = list(client.chat(model=model, messages=messages, tools=[WEATHER_TOOL], options=GREEDY, stream=True))
    streamed_calls = [call for piece in streamed for call in (piece.message.tool_calls or [])]
    assert [call.function.arguments for call in streamed_calls] == [arguments], "the same call, streamed"
    assert "<tool_call>" not in "".join(piece.message.content or "" for piece in streamed)

    messages += [{"role": "assistant", "content": "", "tool_calls": [call.model_dump() for call in calls]},
                 {"role": "tool", "tool_name": "get_weather",
                  "content": json.dumps({"city": "Paris", "temp_c": 21, "sky": "sunny"})}]
    final = client.chat(model=model, messages=messages, options={**GREEDY, "num_predict": 80})
    assert final.message.content and not final.message.tool_calls


def test_small_talk_with_tools_needs_no_call(client, model):
    reply = client.chat(model=model, messages=ask("Hi! Just say hello back."), tools=[WEATHER_TOOL],
                        options={**GREEDY, "num_predict": 60})
    assert reply.message.content and not reply.message.tool_calls


def test_ignored_options_are_named_in_a_header(server):
    response = httpx.post(f"{server}/api/chat", timeout=120, json={
        "model": "x", "messages": ask("hi"), "stream": False,
        "options": {"num_predict": 4, "mirostat": 2, "num_gpu": 1, "num_ctx": 8192}})
    assert response.status_code == 200, response.text
    assert response.headers["x-jisu-ignored-options"] == "mirostat, num_gpu, num_ctx"


def test_errors_reach_the_client_in_ollama_shape(client, model):
    with pytest.raises(ollama.ResponseError) as bad:
        client.chat(model=model, messages=ask("hi"), options={"temperature": 3})
    assert bad.value.status_code == 400 and "options.temperature" in bad.value.error
    with pytest.raises(ollama.ResponseError) as long:
        client.chat(model=model, messages=ask("长城 " * 3000))
    assert long.value.status_code == 400 and "context" in long.value.error
    with pytest.raises(ollama.ResponseError) as fim:
        client.generate(model=model, prompt="def gcd(a, b):", suffix="    return a")
    assert fim.value.status_code == 400 and "suffix" in fim.value.error
    for refused in (lambda: client.pull("llama3.2"), lambda: client.delete("qwen2.5:0.5b"),
                    lambda: client.embed(model=model, input="hi")):
        with pytest.raises(ollama.ResponseError) as not_here:
            refused()
        assert not_here.value.status_code == 501


CANCELLED = 'jisu_requests_total{endpoint="ollama_chat",status="cancelled"}'


def test_client_disconnect_cancels_generation(server):
    cancelled_before = metric_value(server, CANCELLED)
    with httpx.stream("POST", f"{server}/api/chat", timeout=120, json={
            "messages": ask("Write a 2000-word essay about rivers."), "options": {"num_predict": 2000}}) as response:
        for line in response.iter_lines():
            if json.loads(line)["message"]["content"]:
                break  # the answer has started; now hang up
    wait_until_server_idle(server)
    assert metric_value(server, CANCELLED) == cancelled_before + 1, "the answer ended because its client left"
