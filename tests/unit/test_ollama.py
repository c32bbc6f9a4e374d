"""Ollama's API on the fake engine: every route's shape, NDJSON streaming, options, formats,
tools, the routes jisu refuses (501), and bad input answered in Ollama's error shape."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime

import httpx
import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, FakeEngine, fake_runtime
from jisu.server.access import AccessPolicy
from jisu.server.app import create_app
from jisu.types import ChatMessage, SamplingParams
from live_server import serving_in_thread
from streams import wait_until, wait_until_scheduler_idle

ANSWER = "Hello from the fake model!"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
WEATHER_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def client(engine):
    with fake_runtime(engine, parallel=2, max_queue=4) as runtime:
        with TestClient(create_app(runtime), base_url=LOCAL_URL) as test_client:
            yield test_client


@pytest.fixture
def sampled(engine):
    """The SamplingParams each request reached the engine with."""
    seen: list[SamplingParams] = []
    original = engine.new_sampler
    engine.new_sampler = lambda params, tokens: seen.append(params) or original(params, tokens)
    return seen


@pytest.fixture
def prompts(engine):
    """The prompt text (control tokens dropped) of each request, as the fake model read it."""
    seen: list[str] = []
    answer = engine.answer
    engine.answer = lambda prompt: seen.append(prompt) or answer(prompt)
    return seen


def chat(**overrides) -> dict:
    return {"model": "qwen2.5:0.5b", "messages": [{"role": "user", "content": "hi"}], **overrides}


def ndjson(response) -> list[dict]:
    assert response.headers["content-type"].startswith("application/x-ndjson"), response.headers
    lines = response.text.split("\n")
    assert lines[-1] == "", "every line, the last included, ends with a newline"
    return [json.loads(line) for line in lines[:-1]]


def is_rfc3339(text: str) -> bool:
    return bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", text)) \
        and datetime.fromisoformat(text.replace("Z", "+00:00")) is not None


def assert_final(line: dict, reason: str = "stop") -> None:
    assert line["done"] is True and line["done_reason"] == reason, line
    for name in DURATIONS:
        assert isinstance(line[name], int) and line[name] >= 0, (name, line)
    assert line["load_duration"] == 0, "the model is always loaded"
    assert line["prompt_eval_count"] > 0 and line["eval_count"] > 0
    assert line["total_duration"] >= line["prompt_eval_duration"] + line["eval_duration"] - 1


def assert_ollama_error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    for word in words:
        assert word in body["error"], (word, body["error"])
    return body["error"]


# ---- the served model ---------------------------------------------------------------------


def test_version(client):
    body = client.get("/api/version").json()
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"]) and body["jisu"]


def test_tags_list_the_served_model(client):
    models = client.get("/api/tags").json()["models"]
    assert len(models) == 1
    model = models[0]
    assert model["name"] == model["model"] == "fake-model"
    assert isinstance(model["size"], int) and re.fullmatch(r"[0-9a-f]{64}", model["digest"])
    assert is_rfc3339(model["modified_at"])
    assert model["details"] == {"parent_model": "", "format": "gguf", "family": "qwen2", "families": ["qwen2"],
                                "parameter_size": "0.5B", "quantization_level": "Q4_0"}


def test_head_tags_answers_without_a_body(client):
    response = client.head("/api/tags")
    assert response.status_code == 200 and response.content == b""


def test_show_tells_capabilities_and_context(client):
    for body in ({"model": "fake-model"}, {"name": "anything:latest"}, {}):
        shown = client.post("/api/show", json=body)
        assert shown.status_code == 200, shown.text
        info = shown.json()
        assert {"completion", "tools"} <= set(info["capabilities"])
        assert "vision" not in info["capabilities"] and "insert" not in info["capabilities"]
        assert info["model_info"]["general.architecture"] == "qwen2"
        assert info["model_info"]["qwen2.context_length"] == 2048, "the context it is served with"
        assert info["details"]["quantization_level"] == "Q4_0" and info["details"]["family"] == "qwen2"
        assert "temperature 0.7" in info["parameters"] and ".Tools" in info["template"]
        assert is_rfc3339(info["modified_at"])
        assert "/dev/null" not in json.dumps(info), "no server path is shown to a network client"


def test_ps_shows_the_loaded_model(client):
    running = client.get("/api/ps").json()["models"][0]
    assert running["name"] == "fake-model" and running["context_length"] == 2048
    assert running["size_vram"] == 0 and is_rfc3339(running["expires_at"])


# ---- /api/chat ----------------------------------------------------------------------------


def test_chat_streams_ndjson_lines(client):
    response = client.post("/api/chat", json=chat(options={"temperature": 0}))
    assert response.status_code == 200
    lines = ndjson(response)
    *pieces, final = lines
    assert all(line["done"] is False for line in pieces)
    assert "".join(line["message"]["content"] for line in pieces) == ANSWER
    assert all(line["message"]["role"] == "assistant" for line in lines)
    assert all(line["model"] == "fake-model" for line in lines), "the served model names itself"
    assert all(is_rfc3339(line["created_at"]) for line in lines)
    assert_final(final)
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["eval_count"] == len(ANSWER), "one token a byte: the fake's tokens, as counted in usage"
    assert "x-jisu-ignored-options" not in response.headers, "nothing was ignored"


def test_chat_without_streaming_is_one_object(client):
    response = client.post("/api/chat", json=chat(stream=False))
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["message"] == {"role": "assistant", "content": ANSWER}
    assert_final(body)


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/show"])
def test_a_body_without_content_type_is_read_as_json(client, path):
    """Ollama reads any body as JSON, and LiteLLM's ollama_chat/ sends none: FastAPI's strict
    check (a CSRF guard) would refuse it, and the Origin check already does that job."""
    body = chat(stream=False, prompt="hi")
    response = client.post(path, content=json.dumps(body).encode(), headers={"content-type": ""})
    assert response.status_code == 200, response.text
    foreign = client.post(path, content=json.dumps(body).encode(),
                          headers={"content-type": "", "Origin": "https://evil.example"})
    assert_ollama_error(foreign, 403, "https://evil.example")


def test_stream_null_is_the_default(client):
    """Ollama reads a missing or null stream as true, and a null raw as false."""
    assert ndjson(client.post("/api/chat", json=chat(stream=None)))[-1]["done"] is True
    lines = ndjson(client.post("/api/generate", json={"prompt": "hi", "stream": None, "raw": None}))
    assert "".join(line["response"] for line in lines) == ANSWER


def test_num_predict_ends_with_length(client):
    body = client.post("/api/chat", json=chat(stream=False, options={"num_predict": 3})).json()
    assert body["message"]["content"] == "Hel" and body["done_reason"] == "length"
    lines = ndjson(client.post("/api/chat", json=chat(options={"num_predict": 3})))
    assert lines[-1]["done_reason"] == "length"


def test_stop_option(client):
    for stop in (["fake"], "fake"):
        body = client.post("/api/chat", json=chat(stream=False, options={"stop": stop})).json()
        assert body["message"]["content"] == "Hello from the "


def test_options_reach_the_sampler_under_jisu_names(client, sampled):
    options = {"temperature": 0.3, "top_p": 0.5, "top_k": 7, "min_p": 0.1, "seed": 42, "num_predict": 50,
               "stop": ["zz"], "repeat_penalty": 1.2, "repeat_last_n": 32, "presence_penalty": 0.5,
               "frequency_penalty": 0.25}
    response = client.post("/api/chat", json=chat(stream=False, options=options))
    assert response.status_code == 200, response.text
    params = sampled[-1]
    assert (params.temperature, params.top_p, params.top_k, params.min_p, params.seed) == (0.3, 0.5, 7, 0.1, 42)
    assert (params.max_tokens, params.stop) == (50, ["zz"])
    assert (params.repetition_penalty, params.penalty_last_n) == (1.2, 32)
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, 0.25)


def test_ollama_conventions_for_no_limit_and_random_seed(client, sampled):
    options = {"seed": -1, "num_predict": -1, "repeat_last_n": -1}
    assert client.post("/api/chat", json=chat(stream=False, options=options)).status_code == 200
    params = sampled[-1]
    assert params.seed is None and params.max_tokens is None
    assert params.penalty_last_n == 2048, "-1: the whole context"
    client.post("/api/chat", json=chat(stream=False))
    assert sampled[-1] == SamplingParams(), "no options: Qwen's defaults, as on the OpenAI routes"


@pytest.mark.parametrize("stream", [True, False])
def test_unknown_options_are_ignored_and_named(client, stream):
    options = {"temperature": 0, "mirostat": 2, "num_gpu": 99, "num_ctx": 8192, "bad\nname": 1}
    response = client.post("/api/chat", json=chat(stream=stream, options=options))
    assert response.status_code == 200, response.text
    assert response.headers["x-jisu-ignored-options"] == "mirostat, num_gpu, num_ctx and 1 more"


def test_keep_alive_is_accepted(client):
    for keep_alive in ("5m", 0, -1, 3600.5):
        assert client.post("/api/chat", json=chat(stream=False, keep_alive=keep_alive)).status_code == 200


def test_empty_messages_load_the_model(client, sampled):
    for stream in (True, False):
        response = client.post("/api/chat", json={"model": "x", "messages": [], "stream": stream})
        body = ndjson(response)[0] if stream else response.json()
        assert body["done"] is True and body["done_reason"] == "load"
        assert body["message"] == {"role": "assistant", "content": ""}
    assert not sampled, "nothing was generated"


def test_format_json_constrains_the_answer(client, sampled):
    assert client.post("/api/chat", json=chat(stream=False, format="json")).status_code == 200
    assert sampled[-1].grammar and "root" in sampled[-1].grammar and sampled[-1].grammar_trigger is None
    client.post("/api/chat", json=chat(stream=False, format=""))
    assert sampled[-1].grammar is None, "an empty format is plain text"


def test_format_schema_constrains_and_tells_the_model(client, sampled, prompts):
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    response = client.post("/api/chat", json=chat(stream=False, format=schema))
    assert response.status_code == 200, response.text
    assert sampled[-1].grammar and "age" in sampled[-1].grammar
    assert '"age"' in prompts[-1] and "JSON schema" in prompts[-1], "the model reads the schema it must follow"


def test_tool_call_arguments_are_an_object(client, engine, prompts):
    engine.answer = lambda prompt: prompts.append(prompt) or WEATHER_CALL
    body = client.post("/api/chat", json=chat(stream=False, tools=[WEATHER_TOOL])).json()
    assert body["message"]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert body["message"]["content"] == "" and body["done_reason"] == "stop"
    assert "get_weather" in prompts[-1] and "<tools>" in prompts[-1], "the template lists the tools"


def test_streamed_tool_calls_come_in_one_line_before_the_end(client, engine):
    engine.answer = lambda prompt: "Let me look. " + WEATHER_CALL
    lines = ndjson(client.post("/api/chat", json=chat(tools=[WEATHER_TOOL])))
    text = "".join(line["message"]["content"] for line in lines)
    assert text == "Let me look. " and "<tool_call>" not in text
    calls = [line for line in lines if "tool_calls" in line["message"]]
    assert len(calls) == 1 and calls[0]["done"] is False
    assert calls[0]["message"]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert_final(lines[-1])


def test_an_untagged_call_is_a_call_too(client, engine):
    """The model decides (Ollama has no tool_choice), and small ones often drop the tags."""
    engine.answer = lambda prompt: '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    for stream in (False, True):
        response = client.post("/api/chat", json=chat(stream=stream, tools=[WEATHER_TOOL]))
        messages = [line["message"] for line in ndjson(response)] if stream else [response.json()["message"]]
        assert [call for m in messages for call in m.get("tool_calls", [])] == [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
        assert "".join(m["content"] for m in messages) == ""


def test_tool_results_in_history(client, prompts):
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "22 degrees", "tool_name": "get_weather"},
    ]
    response = client.post("/api/chat", json=chat(stream=False, messages=history, tools=[WEATHER_TOOL]))
    assert response.status_code == 200, response.text
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompts[-1]
    assert "<tool_response>\n22 degrees\n</tool_response>" in prompts[-1]


# ---- /api/generate ------------------------------------------------------------------------


def test_generate_streams_response_pieces(client):
    lines = ndjson(client.post("/api/generate", json={"model": "x", "prompt": "hi"}))
    assert "".join(line["response"] for line in lines) == ANSWER
    assert_final(lines[-1])
    assert "message" not in lines[-1] and "context" not in lines[-1]
    body = client.post("/api/generate", json={"model": "x", "prompt": "hi", "stream": False}).json()
    assert body["response"] == ANSWER and body["done"] is True


def test_generate_uses_the_template_and_system(client, prompts):
    client.post("/api/generate", json={"prompt": "Why?", "system": "Be brief.", "stream": False})
    assert "system\nBe brief." in prompts[-1] and "user\nWhy?" in prompts[-1] and prompts[-1].endswith("assistant\n")


def test_generate_raw_uses_the_prompt_as_is(client, prompts):
    client.post("/api/generate", json={"prompt": "Once upon a time", "raw": True, "stream": False})
    assert prompts[-1] == "Once upon a time"


def test_generate_with_format(client, sampled):
    for raw in (False, True):
        response = client.post("/api/generate", json={"prompt": "x", "raw": raw, "format": "json", "stream": False})
        assert response.status_code == 200 and sampled[-1].grammar


def test_generate_empty_prompt_loads_the_model(client, sampled):
    for request in ({"model": "x"}, {"prompt": "", "system": "Be brief.", "raw": True}):
        body = client.post("/api/generate", json={**request, "stream": False}).json()
        assert body == {**body, "response": "", "done": True, "done_reason": "load"}
    assert not sampled, "nothing was generated"


# ---- what jisu refuses --------------------------------------------------------------------


@pytest.mark.parametrize("method,path", [("POST", "/api/pull"), ("POST", "/api/push"), ("POST", "/api/create"),
                                         ("POST", "/api/copy"), ("DELETE", "/api/delete"),
                                         ("POST", "/api/blobs/sha256:abc"), ("POST", "/api/embed"),
                                         ("POST", "/api/embeddings")])
def test_model_management_and_embeddings_are_501(client, method, path):
    response = client.request(method, path, json={"model": "llama3", "name": "llama3", "input": "x"})
    message = assert_ollama_error(response, 501)
    assert "embeddings" in message if "embed" in path else "jisu pull" in message


BAD = [
    ("not JSON", b"{nope", "not valid JSON"),
    ("an array", b"[1]", "JSON object"),
    ("a wizard", chat(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
    ("content as a number", chat(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    ("images", chat(messages=[{"role": "user", "content": "hi", "images": ["iVBORw0KGgo="]}]), "text only"),
    ("hot temperature", chat(options={"temperature": "hot"}), "options.temperature"),
    ("temperature 5", chat(options={"temperature": 5}), "options.temperature"),
    ("NaN top_p", b'{"messages": [{"role": "user", "content": "hi"}], "options": {"top_p": NaN}}', "finite"),
    ("num_predict 0", chat(options={"num_predict": 0}), "options.num_predict"),
    ("seed -5", chat(options={"seed": -5}), "options.seed"),
    ("17 stop strings", chat(options={"stop": [f"s{i}" for i in range(17)]}), "options.stop"),
    ("options a list", chat(options=[1]), "options"),
    ("stream as a string", chat(stream="false"), "stream"),
    ("format xml", chat(format="xml"), "format"),
    ("format a bad schema", chat(format={"type": "objectx"}), "format"),
    ("a tool without a name", chat(tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
    ("thinking", chat(think=True), "think"),
    ("a Go template", chat(template="{{ .Prompt }}"), "template"),
    ("too long", chat(messages=[{"role": "user", "content": "x" * 3000}]), "context"),
]


@pytest.mark.parametrize("name,body,words", BAD, ids=[case[0] for case in BAD])
def test_bad_chat_input_is_400_in_ollama_shape(client, name, body, words):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/api/chat", content=content, headers={"content-type": "application/json"})
    assert_ollama_error(response, 400, words)


@pytest.mark.parametrize("body,words", [
    ({"prompt": "def f(", "suffix": "return x"}, "suffix"),
    ({"prompt": "x", "images": ["iVBORw0KGgo="]}, "text only"),
    ({"prompt": "x", "context": [1, 2, 3]}, "context"),
    ({"prompt": "x", "raw": "yes"}, "raw"),
    ({"prompt": "x" * 3000}, "context"),
    ({"prompt": "x", "options": {"repeat_penalty": 0}}, "options.repeat_penalty"),
])
def test_bad_generate_input_is_400_in_ollama_shape(client, body, words):
    assert_ollama_error(client.post("/api/generate", json=body), 400, words)


def test_unknown_routes_and_methods_answer_in_ollama_shape(client):
    assert_ollama_error(client.get("/api/nothing"), 404)
    assert_ollama_error(client.get("/api/chat"), 405)


def test_refusals_count_in_metrics(client):
    client.post("/api/chat", json=chat(format={"type": "objectx"}))  # refused by the core, past the schema
    client.post("/api/pull", json={"model": "x"})
    metrics = client.get("/metrics").text
    assert 'jisu_requests_total{endpoint="ollama_chat",status="400"} 1.0' in metrics
    assert 'jisu_refusals_total{reason="not_implemented"} 1.0' in metrics


@pytest.mark.parametrize("stream", [True, False])
def test_full_queue_is_503_before_any_byte(engine, stream):
    engine.step_delay_s, engine.answer = 0.02, (lambda prompt: "slow " * 200)
    with fake_runtime(engine, parallel=1, max_queue=0) as runtime:
        with TestClient(create_app(runtime), base_url=LOCAL_URL) as client:
            first = runtime.start(runtime.prepare_chat([ChatMessage("user", "hi")], SamplingParams()), lambda e: None)
            response = client.post("/api/chat", json=chat(stream=stream))
            first.cancel()
    assert response.headers["content-type"].startswith("application/json"), "not a stream that begins as a 200"
    assert_ollama_error(response, 503, "busy")
    assert response.headers["retry-after"].isdigit()


def test_engine_failure_mid_stream_ends_with_an_error_line(engine, client):
    engine.fail_on_step = 4
    lines = ndjson(client.post("/api/chat", json=chat()))
    assert lines[-1] == {"error": lines[-1]["error"]} and "simulated engine failure" in lines[-1]["error"]
    engine.fail_on_step = None
    assert client.post("/api/chat", json=chat(stream=False)).status_code == 200, "the engine still answers"


def test_keys_and_origins_apply_in_ollama_shape():
    with fake_runtime() as runtime:
        app = create_app(runtime, AccessPolicy.build({"alice-key-123": "alice"}))
        with TestClient(app, base_url=LOCAL_URL) as client:
            refused = client.get("/api/tags")
            assert_ollama_error(refused, 401, "API key")
            assert refused.headers["www-authenticate"].startswith("Bearer")
            key = {"Authorization": "Bearer alice-key-123"}
            assert client.get("/api/tags", headers=key).status_code == 200
            foreign = client.post("/api/chat", json=chat(), headers={**key, "Origin": "https://evil.example"})
            assert_ollama_error(foreign, 403, "https://evil.example")


def test_client_leaving_a_stream_cancels_its_answer():
    engine = FakeEngine(step_delay_s=0.01, answer=lambda prompt: "word " * 500)
    with fake_runtime(engine, parallel=2) as runtime:
        with serving_in_thread(create_app(runtime)) as (url, _):
            with httpx.stream("POST", f"{url}/api/chat", json=chat(), timeout=30) as response:
                for line in response.iter_lines():
                    if json.loads(line)["message"]["content"]:
                        break  # the answer has started; now hang up
            wait_until_scheduler_idle(runtime)
            metrics = httpx.get(f"{url}/metrics").text
    assert 'jisu_requests_total{endpoint="ollama_chat",status="cancelled"} 1.0' in metrics


def test_client_leaving_a_whole_answer_cancels_it():
    engine = FakeEngine(step_delay_s=0.01, answer=lambda prompt: "word " * 500)
    with fake_runtime(engine, parallel=2) as runtime:
        with serving_in_thread(create_app(runtime)) as (url, _):
            def ask():
                try:
                    httpx.post(f"{url}/api/generate", json={"prompt": "x", "stream": False}, timeout=0.5)
                except httpx.TimeoutException:
                    pass  # the client gives up

            asker = threading.Thread(target=ask)
            asker.start()
            wait_until(lambda: runtime.stats()["running"] == 1, "the answer started")
            asker.join()
            wait_until_scheduler_idle(runtime)
            metrics = httpx.get(f"{url}/metrics").text
    assert 'jisu_requests_total{endpoint="ollama_generate",status="cancelled"} 1.0' in metrics


# ---- the official client ------------------------------------------------------------------


def test_the_ollama_client_reads_every_answer(engine):
    ollama = pytest.importorskip("ollama")
    with fake_runtime(engine, parallel=2) as runtime:
        with serving_in_thread(create_app(runtime)) as (url, _):
            client = ollama.Client(host=url)
            assert [m.model for m in client.list().models] == ["fake-model"]
            shown = client.show("fake-model")
            assert "tools" in shown.capabilities and shown.modelinfo["qwen2.context_length"] == 2048
            assert client.ps().models[0].context_length == 2048
            reply = client.chat(model="fake-model", messages=[{"role": "user", "content": "hi"}])
            assert reply.message.content == ANSWER and reply.done_reason == "stop"
            pieces = list(client.chat(model="x", messages=[{"role": "user", "content": "hi"}], stream=True))
            assert "".join(p.message.content for p in pieces) == ANSWER and pieces[-1].eval_count == len(ANSWER)
            assert client.generate(model="x", prompt="hi").response == ANSWER
            engine.answer = lambda prompt: WEATHER_CALL
            called = client.chat(model="x", messages=[{"role": "user", "content": "Paris?"}], tools=[WEATHER_TOOL])
            assert called.message.tool_calls[0].function.arguments == {"city": "Paris"}
            with pytest.raises(ollama.ResponseError) as refused:
                client.pull("llama3")
            assert refused.value.status_code == 501 and "jisu pull" in refused.value.error
            with pytest.raises(ollama.ResponseError) as bad:
                client.chat(model="x", messages=[{"role": "user", "content": "hi"}], options={"temperature": 9})
            assert bad.value.status_code == 400 and "options.temperature" in bad.value.error
