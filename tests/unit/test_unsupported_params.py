"""Nothing a request asks for is silently dropped: an OpenAI parameter jisu cannot honour is a
400 naming it (unsupported_parameter), an unknown one a 400 as OpenAI gives it
(unrecognized_request_argument), while metadata that changes nothing is accepted, and the
official openai client's own requests all go through. On the fake engine."""

from __future__ import annotations

import openai
import pydantic
import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, FakeEngine, fake_runtime
from jisu.server.app import create_app

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # A module's app outlives the per-test JISU_HOME: it gets a conversation store of its own.
    history = tmp_path_factory.mktemp("history") / "history.db"
    with fake_runtime(FakeEngine(answer=lambda prompt: '{"name": "Ada"}'), parallel=2) as runtime:
        with TestClient(create_app(runtime, history_path=history), base_url=LOCAL_URL) as test_client:
            yield test_client


def refused(response, param: str, code: str) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code), error
    assert param in error["message"]
    return error


@pytest.mark.parametrize("param,value", [
    ("n", 2),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("modalities", ["text", "audio"]),
    ("prediction", {"type": "content", "content": "x"}),
    ("web_search_options", {}),
    ("service_tier", "flex"),
    ("reasoning_effort", "high"),
    ("verbosity", "low"),
    ("moderation", {"model": "omni-moderation-latest"}),
    ("functions", [{"name": "f", "parameters": {}}]),
    ("function_call", "auto"),
    ("store", True),
])
def test_chat_parameters_jisu_cannot_honour_are_refused_by_name(client, param, value):
    response = client.post("/v1/chat/completions", json={"messages": MESSAGES, param: value})
    refused(response, param, "unsupported_parameter")


@pytest.mark.parametrize("param,value", [("best_of", 2), ("suffix", "def f():"), ("n", 3)])
def test_completion_parameters_jisu_cannot_honour_are_refused_by_name(client, param, value):
    response = client.post("/v1/completions", json={"prompt": "Once", param: value})
    refused(response, param, "unsupported_parameter")


def test_unknown_parameters_are_refused_as_openai_refuses_them(client):
    for path, body in (("/v1/chat/completions", {"messages": MESSAGES}), ("/v1/completions", {"prompt": "Once"})):
        error = refused(client.post(path, json={**body, "typical_p": 0.9}), "typical_p",
                        "unrecognized_request_argument")
        assert error["message"] == "Unrecognized request argument supplied: typical_p"


def test_harmless_values_and_metadata_are_accepted(client):
    harmless = {"n": 1, "store": False, "service_tier": "auto", "modalities": ["text"], "reasoning_effort": "none",
                "user": "ada", "metadata": {"team": "docs"}, "safety_identifier": "u-1", "parallel_tool_calls": True,
                "prompt_cache_key": "chat-7", "seed": 3, "stream_options": {"include_usage": True},
                "audio": None, "prediction": None, "logit_bias": {"42": 1}}
    response = client.post("/v1/chat/completions", json={"messages": MESSAGES, **harmless})
    assert response.status_code == 200, response.text
    response = client.post("/v1/completions", json={"prompt": "Once", "best_of": 1, "suffix": "", "user": "ada",
                                                    "echo": True})
    assert response.status_code == 200, response.text


def test_unknown_fields_inside_messages_stay_allowed(client):
    # Clients send back whole response messages (refusal, annotations, audio: null...).
    history = [*MESSAGES, {"role": "assistant", "content": "hello", "refusal": None, "annotations": []},
               {"role": "user", "content": "again"}]
    assert client.post("/v1/chat/completions", json={"messages": history}).status_code == 200


def test_an_image_part_is_refused_naming_the_part(client):
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages[0].content[1]" and "text only" in error["message"]


def test_echo_streams_the_prompt_first(client):
    response = client.post("/v1/completions", json={"prompt": "Once", "echo": True, "stream": True, "max_tokens": 2})
    texts = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: {")]
    assert '"text": "Once"' in texts[0], "echo is honoured when streaming too"


def test_the_openai_clients_requests_all_go_through(client):
    """The official client's defaults must never meet unrecognized_request_argument."""

    class Person(pydantic.BaseModel):
        name: str

    api = openai.OpenAI(base_url=f"{LOCAL_URL}/v1", api_key="unused", http_client=client, max_retries=0)
    chat = api.chat.completions.create(model="m", messages=MESSAGES, temperature=0, max_completion_tokens=8,
                                       user="ada", store=False, seed=1)
    assert chat.choices[0].message.content
    chunks = list(api.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    assert api.chat.completions.parse(model="m", messages=MESSAGES, response_format=Person).choices[0].message.parsed
    assert api.completions.create(model="m", prompt="Once", max_tokens=3, echo=True).choices[0].text
    with pytest.raises(openai.BadRequestError) as error:
        api.chat.completions.create(model="m", messages=MESSAGES, n=2)
    assert error.value.body["param"] == "n"
