"""The client libraries people already use, pointed at a live `jisu serve` on the real model:
the openai SDK beyond test_api.py (async, `parse` with pydantic), LangChain's ChatOpenAI,
LiteLLM (`openai/` and `ollama_chat/`), instructor, and the ollama client's async side.

Each test asserts what the library hands its user (parsed objects, tool calls with arguments,
usage), so a field jisu leaves out or shapes differently fails here, not in someone's app.
Answers are greedy and short; where the small model's own choice is not what is tested,
tool_choice makes it deterministic.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import socket
import threading
from contextlib import contextmanager

import instructor
import ollama
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from jisu.server.access import is_loopback
from live_server import running_server, served_model

WEATHER_QUESTION = "What is the weather like in Paris right now?"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"]}}}
CAPITAL_QUESTION = "What is the capital of France? One word."
PERSON_TEXT = "Alice is 30 years old. Extract the person."


class Person(BaseModel):
    name: str
    age: int


class GetWeather(BaseModel):
    """Get the current weather for a city"""

    city: str


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assert_alice(person) -> None:
    assert isinstance(person, Person), person
    assert (person.name, person.age) == ("Alice", 30), person


def run_on_own_thread(make_coroutine):
    """asyncio.run on a thread of its own: in the whole suite an earlier test (Playwright's
    sync API) leaves an event loop marked running on the main thread, and asyncio.run
    refuses to start there."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = asyncio.run(make_coroutine())
        except BaseException as error:  # re-raised on the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture(scope="module")
def server(model_path):
    with running_server(model_path, "--ctx-size", "4096", "--parallel", "4", name="clients") as url:
        yield url


@pytest.fixture(scope="module")
def model(server) -> str:
    return served_model(server)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=300)


# ---- openai: async and parse ----------------------------------------------------------------


def test_async_client_answers_concurrent_requests_and_streams(server, model):
    async def run():
        client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=300)
        sums = await asyncio.gather(*[client.chat.completions.create(
            model=model, messages=user(f"What is {n}+{n}? Answer with a number."), temperature=0, max_tokens=8)
            for n in (1, 2, 3, 4)])
        stream = await client.chat.completions.create(
            model=model, messages=user("What is 2+2? Answer with a number."), temperature=0, max_tokens=8, stream=True)
        streamed = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        await client.close()
        return [answer.choices[0].message.content for answer in sums], streamed

    answers, streamed = run_on_own_thread(run)
    assert [str(2 * n) in answer for n, answer in zip((1, 2, 3, 4), answers)] == [True] * 4, answers
    assert streamed == answers[1], "the same greedy answer, streamed"


def test_parse_gives_a_pydantic_object(client, model):
    parsed = client.chat.completions.parse(model=model, messages=user(PERSON_TEXT), response_format=Person,
                                           temperature=0, max_tokens=60)
    assert parsed.choices[0].finish_reason == "stop" and parsed.choices[0].message.refusal is None
    assert_alice(parsed.choices[0].message.parsed)
    with client.chat.completions.stream(model=model, messages=user(PERSON_TEXT), response_format=Person,
                                        temperature=0, max_tokens=60) as stream:
        final = stream.get_final_completion()
    assert_alice(final.choices[0].message.parsed)


def test_async_parse(server, model):
    async def run():
        client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=300)
        parsed = await client.chat.completions.parse(model=model, messages=user(PERSON_TEXT), response_format=Person,
                                                     temperature=0, max_tokens=60)
        await client.close()
        return parsed.choices[0].message.parsed

    assert_alice(run_on_own_thread(run))


def test_parse_with_a_strict_pydantic_tool(client, model):
    parsed = client.chat.completions.parse(
        model=model, messages=user(WEATHER_QUESTION), tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice="required", temperature=0, max_tokens=60)
    call = parsed.choices[0].message.tool_calls[0]
    assert parsed.choices[0].finish_reason == "tool_calls" and call.function.name == "GetWeather"
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert "paris" in call.function.parsed_arguments.city.lower()


# ---- LangChain's ChatOpenAI -------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_model(server, model):
    return ChatOpenAI(base_url=f"{server}/v1", api_key="unused", model=model, temperature=0,
                      max_tokens=60, max_retries=0, timeout=300)


def test_langchain_invoke(chat_model, model):
    reply = chat_model.invoke(CAPITAL_QUESTION)
    assert "Paris" in reply.content
    assert reply.response_metadata["finish_reason"] == "stop" and reply.response_metadata["model_name"] == model
    assert reply.usage_metadata["input_tokens"] > 10 and reply.usage_metadata["output_tokens"] > 0


def test_langchain_stream_gives_the_invoked_answer_with_usage(chat_model):
    whole = chat_model.invoke("List three fruits.").content
    chunks = list(chat_model.stream("List three fruits.", stream_usage=True))
    assert len(chunks) > 2, "the answer arrives in pieces"
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == whole
    assert merged.usage_metadata["output_tokens"] > 2 and merged.response_metadata["finish_reason"] == "stop"


@pytest.mark.parametrize("method", [None, "function_calling"])
def test_langchain_structured_output(chat_model, method):
    """LangChain's default method is json_schema (OpenAI's response_format): the answer is the
    JSON itself. function_calling forces a tool call named after the model class."""
    options = {"method": method} if method else {}
    result = chat_model.with_structured_output(Person, include_raw=True, **options).invoke(PERSON_TEXT)
    assert result["parsing_error"] is None
    assert_alice(result["parsed"])
    raw = result["raw"]
    if method == "function_calling":
        assert [call["name"] for call in raw.tool_calls] == ["Person"]
    else:
        assert raw.tool_calls == [] and json.loads(raw.content) == {"name": "Alice", "age": 30}


@pytest.mark.parametrize("tool_choice", [None, "get_weather"])
def test_langchain_bind_tools_round_trip(chat_model, tool_choice):
    """None leaves the decision to the model (auto); a tool's name forces that tool."""
    @tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return json.dumps({"city": city, "temp_c": 21, "sky": "sunny"})

    options = {"tool_choice": tool_choice} if tool_choice else {}
    history = [HumanMessage(WEATHER_QUESTION)]
    asked = chat_model.bind_tools([get_weather], **options).invoke(history)
    assert [call["name"] for call in asked.tool_calls] == ["get_weather"], asked
    call = asked.tool_calls[0]
    assert "paris" in call["args"]["city"].lower() and call["id"]
    history += [asked, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    # The history LangChain writes back (an assistant turn with tool_calls, then the result)
    # is read; "none" makes the model answer in text, which is all this checks.
    final = chat_model.bind_tools([get_weather], tool_choice="none").invoke(history)
    assert final.content and not final.tool_calls


# ---- LiteLLM --------------------------------------------------------------------------------


@contextmanager
def loopback_only():
    """Refuse, and record, every lookup of a host that is not this machine: LiteLLM fetches
    its model price map from the internet at import unless told not to."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not is_loopback(name):
            attempts.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: the tests stay on this machine")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield attempts


@pytest.fixture(scope="module")
def litellm():
    with loopback_only() as attempts, pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # its bundled copy, not GitHub's
        yield importlib.import_module("litellm")  # imported here, after the two lines above
    assert attempts == [], f"LiteLLM tried to reach {attempts}"


@pytest.fixture(params=["openai", "ollama_chat"])
def route(request, server, model) -> dict:
    """LiteLLM's arguments for jisu's OpenAI API or its Ollama API."""
    if request.param == "openai":
        return {"model": f"openai/{model}", "api_base": f"{server}/v1", "api_key": "unused"}
    return {"model": f"ollama_chat/{model}", "api_base": server}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_litellm_completion(litellm, route, stream):
    response = litellm.completion(messages=user(CAPITAL_QUESTION), temperature=0, max_tokens=20, stream=stream,
                                  num_retries=0, **route)
    if stream:
        chunks = list(response)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
        finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices[0].finish_reason]
    else:
        text, finish = response.choices[0].message.content, [response.choices[0].finish_reason]
        assert response.usage.prompt_tokens > 10 and response.usage.completion_tokens > 0
    assert "Paris" in text and finish == ["stop"]


def test_litellm_tool_call(litellm, route):
    response = litellm.completion(messages=user(WEATHER_QUESTION), tools=[WEATHER_TOOL], temperature=0,
                                  max_tokens=60, num_retries=0, **route)
    calls = response.choices[0].message.tool_calls
    assert response.choices[0].finish_reason == "tool_calls" and [c.function.name for c in calls] == ["get_weather"]
    assert "paris" in json.loads(calls[0].function.arguments)["city"].lower()


# ---- instructor -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["TOOLS", "JSON"])
def test_instructor_extracts_a_pydantic_model(client, model, mode):
    patched = instructor.from_openai(client, mode=instructor.Mode[mode])
    # max_retries=0: instructor would otherwise ask again after an invalid answer and hide it.
    person, completion = patched.chat.completions.create_with_completion(
        model=model, response_model=Person, messages=user(PERSON_TEXT), temperature=0, max_tokens=60,
        max_retries=0)
    assert_alice(person)
    message = completion.choices[0].message
    if mode == "TOOLS":
        assert [call.function.name for call in message.tool_calls] == ["Person"]
    else:
        assert message.tool_calls is None and json.loads(message.content) == {"name": "Alice", "age": 30}


# ---- the ollama client's async side (test_ollama_api.py drives the sync one) ----------------


def test_ollama_async_client_streams_chat_and_generate(server, model):
    async def run():
        client = ollama.AsyncClient(host=server, timeout=300)
        options = {"temperature": 0, "num_predict": 20}
        whole = await client.chat(model=model, messages=user("List three fruits."), options=options)
        pieces = [piece async for piece in await client.chat(model=model, messages=user("List three fruits."),
                                                             options=options, stream=True)]
        generated = await client.generate(model=model, prompt=CAPITAL_QUESTION, options=options)
        parts = [part async for part in await client.generate(model=model, prompt=CAPITAL_QUESTION,
                                                              options=options, stream=True)]
        return whole, pieces, generated, parts

    whole, pieces, generated, parts = run_on_own_thread(run)
    assert "".join(piece.message.content for piece in pieces) == whole.message.content != ""
    assert pieces[-1].done and pieces[-1].eval_count == whole.eval_count
    assert "Paris" in generated.response and "".join(part.response for part in parts) == generated.response
    assert parts[-1].done and parts[-1].done_reason == "stop"
