"""The agent backend on the real model: schema-constrained JSON, tool calls, long documents."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from live_server import running_server, served_model
from streams import answer_text, sse_events

SCHEMAS = {
    "person": {"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 5}},
        "required": ["name", "age", "languages"], "additionalProperties": False},
    "review": {"type": "object", "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "score": {"type": "number", "minimum": 0, "maximum": 10},
        "summary": {"type": "string", "maxLength": 120}},
        "required": ["sentiment", "score", "summary"], "additionalProperties": False},
    "order": {"type": "object", "properties": {
        "order_id": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{4}$"},
        "items": {"type": "array", "minItems": 1, "maxItems": 4, "items": {
            "type": "object", "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
            "required": ["sku", "quantity"], "additionalProperties": False}},
        "express": {"type": "boolean"}},
        "required": ["order_id", "items", "express"], "additionalProperties": False},
    "city": {"type": "object", "properties": {
        "city": {"type": "string"}, "country": {"type": "string"},
        "population_millions": {"type": "number"},
        "landmarks": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "climate": {"type": "object", "properties": {
            "summer": {"type": "string", "enum": ["hot", "warm", "mild", "cool"]},
            "rainy": {"type": "boolean"}}, "required": ["summer", "rainy"], "additionalProperties": False}},
        "required": ["city", "country", "landmarks", "climate"], "additionalProperties": False},
}
PROMPTS = {
    "person": ["Describe a software engineer from Shanghai.", "Invent a retired teacher.",
               "Describe a child who speaks three languages.", "介绍一位年轻的画家。", "Make up a pilot."],
    "review": ["Review a noisy hotel.", "Review a great noodle shop.", "这部电影一般般。",
               "Review a laptop with a weak battery.", "Review a quiet library."],
    "order": ["Order two keyboards and a mouse, express.", "Order five notebooks.",
              "订三本书，不要加急。", "Order one chair.", "Order pens and paper, express delivery."],
    "city": ["Describe Beijing.", "Describe Paris.", "介绍一下杭州。", "Describe Sydney.", "Describe Cairo."],
}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}


@pytest.fixture(scope="module")
def server(model_path):
    with running_server(model_path, "--ctx-size", "16384", "--parallel", "4", name="agent") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=600)


@pytest.fixture(scope="module")
def model(server) -> str:
    """The name the server answers with: the stand-in's alias, or JISU_TEST_MODEL's."""
    return served_model(server)


@pytest.mark.parametrize("schema_name", list(SCHEMAS))
def test_schema_constrained_answers_always_validate(client, model, schema_name):
    schema = SCHEMAS[schema_name]
    for prompt in PROMPTS[schema_name]:
        response = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=300, temperature=0.7,
            response_format={"type": "json_schema", "json_schema": {"name": schema_name, "schema": schema,
                                                                    "strict": True}})
        assert response.choices[0].finish_reason == "stop", response.choices[0].message.content
        document = json.loads(response.choices[0].message.content)
        jsonschema.validate(document, schema)


def test_json_object_mode_returns_json_even_when_prose_is_invited(client, model):
    for prompt in ("Write two sentences about a dragon, in flowing poetic prose.",
                   "Tell me about your favourite season, in a few warm sentences."):
        response = client.chat.completions.create(
            model=model, max_tokens=400, temperature=0.7, seed=11, response_format={"type": "json_object"},
            messages=[{"role": "user", "content": prompt}])
        assert response.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(response.choices[0].message.content), dict)


def weather_round_trip(client, model: str, stream: bool):
    messages = [{"role": "user", "content": "What is the weather like in Paris right now?"}]
    if stream:
        chunks = list(client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER_TOOL], tool_choice="required", temperature=0,
            max_tokens=100, stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        calls = [tc for d in deltas for tc in (d.tool_calls or [])]
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        call_id, name, arguments = calls[0].id, calls[0].function.name, calls[0].function.arguments
        assert finish == ["tool_calls"]
    else:
        response = client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER_TOOL], tool_choice="required", temperature=0,
            max_tokens=100)
        assert response.choices[0].finish_reason == "tool_calls"
        call = response.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert name == "get_weather" and call_id
    assert "paris" in json.loads(arguments)["city"].lower()
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"city": "Paris", "temp_c": 21, "sky": "sunny"})},
    ]
    final = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL],
                                           tool_choice="none", temperature=0, max_tokens=80)
    # The stand-in (a coder model) echoes its call as text here instead of using the result,
    # so only the mechanics are asserted: the history is accepted and an answer comes back.
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.tool_calls is None and final.choices[0].message.content


def test_tool_call_round_trip(client, model):
    weather_round_trip(client, model, stream=False)


def test_tool_call_round_trip_streaming(client, model):
    weather_round_trip(client, model, stream=True)


def test_auto_tool_choice_answers_small_talk_without_a_call(client, model):
    response = client.chat.completions.create(
        model=model, tools=[WEATHER_TOOL], temperature=0, max_tokens=60,
        messages=[{"role": "user", "content": "Hi! Just say hello back."}])
    message = response.choices[0].message
    assert message.tool_calls is None and message.content


@pytest.mark.parametrize("stream", [False, True])
def test_auto_tool_choice_reads_a_call_the_model_writes_without_tags(client, model, stream):
    """The stand-in opens its call as bare JSON rather than with `<tool_call>`: from that opening
    llama.cpp's lazy grammar holds it to the schema, and the client gets a call, never the JSON."""
    request = dict(model=model, tools=[WEATHER_TOOL], tool_choice="auto", temperature=0, max_tokens=60,
                   messages=[{"role": "user", "content": "What's the weather like in Paris right now?"}])
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **request))
        deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
        content = "".join(delta.content or "" for delta in deltas)
        calls = [call for delta in deltas for call in (delta.tool_calls or [])]
    else:
        message = client.chat.completions.create(**request).choices[0].message
        content, calls = message.content or "", message.tool_calls or []
    assert not content, "a call's JSON is never shown as text"
    assert [call.function.name for call in calls] == ["get_weather"]
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER_TOOL["function"]["parameters"])


def planted_document(tokens_wanted: int) -> tuple[str, str]:
    fact = "The secret launch code of the Nebula project is 7-4-1-9-PLUM."
    filler = [f"Section {i}. The committee reviewed routine matters of budget, staffing and weather "
              f"stations number {i}, and recorded nothing unusual in its minutes." for i in range(tokens_wanted // 30)]
    filler.insert(len(filler) // 2, fact)
    return "\n".join(filler), fact


def test_long_document_with_a_fact_in_the_middle(server):
    document, _ = planted_document(12_000)
    body = {"max_tokens": 40, "temperature": 0, "stream": True, "messages": [
        {"role": "user", "content": document + "\n\nQuestion: what is the secret launch code of the Nebula "
                                               "project? Answer with the code only."}]}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=900) as response:
        chunks, comments = sse_events(response.iter_lines())
    progress = [tuple(int(x) for x in line[len(": prefill "):].split("/"))
                for line in comments if line.startswith(": prefill ")]
    answer = answer_text(chunks)
    assert len(progress) >= 5, "a long prompt reports its progress"
    processed = [p for p, _ in progress]
    assert processed == sorted(processed) and progress[-1][1] >= 11_000
    assert "7-4-1-9" in answer and "PLUM" in answer.upper(), answer


def test_invalid_schema_is_400_before_generating(server):
    response = httpx.post(f"{server}/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format.json_schema.schema"


def test_overflow_is_400_with_counts(server):
    document, _ = planted_document(20_000)
    response = httpx.post(f"{server}/v1/chat/completions", timeout=120, json={
        "messages": [{"role": "user", "content": document}]})
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "context_length_exceeded"
    assert error["context_size"] == 16384 and error["prompt_tokens"] > 16384
