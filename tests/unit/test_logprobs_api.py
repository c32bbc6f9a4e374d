"""logprobs and top_logprobs on the wire: OpenAI's chat and legacy completion shapes and
Ollama's, streamed and not, the WebSocket, and bad requests; on the fake engine, whose "model"
gives its scripted byte logit 4, the next byte 2 and every other token 0."""

from __future__ import annotations

import json
import math

import openai
import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, LOCAL_WS, FakeEngine, ScriptedSampler, fake_runtime
from jisu.server.app import create_app
from jisu.server.logprobs import completion_logprobs, token_text
from jisu.types import TokenLogprob
from streams import DONE, sse_events

# The fake's distribution over its 259 tokens: the scripted one, and the byte after it.
CHOSEN = 4.0 - math.log(math.exp(4) + math.exp(2) + 257)
RUNNER_UP = CHOSEN - 2.0
MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_token_that_is_part_of_a_character_is_written_with_byte_escapes():
    assert token_text("你".encode()[:2]) == "\\xe4\\xbd"
    assert token_text(b"ok \xe4") == "ok \\xe4"
    assert token_text("你".encode()) == "你"


def test_a_legacy_top_logprobs_dict_always_holds_the_chosen_token():
    chosen_elsewhere = TokenLogprob(b"b", -3.0, [(b"a", -0.1), (b"c", -2.0)], 0)
    assert completion_logprobs([chosen_elsewhere])["top_logprobs"] == [{"a": -0.1, "c": -2.0, "b": -3.0}]


@pytest.fixture
def engine():
    return FakeEngine(answer=lambda prompt: "Hi 你好 END more")


@pytest.fixture
def client(engine):
    with fake_runtime(engine, parallel=2) as runtime:
        with TestClient(create_app(runtime), base_url=LOCAL_URL) as test_client:
            yield test_client


def chat(client, **fields):
    return client.post("/v1/chat/completions", json={"messages": MESSAGES, "temperature": 0, **fields})


def streamed_chunks(response) -> list[dict]:
    data, _ = sse_events(response.text)
    assert data[-1] == DONE
    return data[:-1]


def test_chat_logprobs_have_openais_shape(client):
    choice = chat(client, logprobs=True, top_logprobs=2).json()["choices"][0]
    assert choice["message"]["content"] == "Hi 你好 END more"
    assert set(choice["logprobs"]) == {"content", "refusal"} and choice["logprobs"]["refusal"] is None
    first = choice["logprobs"]["content"][0]
    assert first == {"token": "H", "logprob": pytest.approx(CHOSEN), "bytes": [72], "top_logprobs": [
        {"token": "H", "logprob": pytest.approx(CHOSEN), "bytes": [72]},
        {"token": "I", "logprob": pytest.approx(RUNNER_UP), "bytes": [73]}]}
    entries = choice["logprobs"]["content"]
    assert b"".join(bytes(e["bytes"]) for e in entries) == "Hi 你好 END more".encode()


def test_logprobs_without_alternatives_have_empty_top_lists(client):
    entries = chat(client, logprobs=True).json()["choices"][0]["logprobs"]["content"]
    assert entries and all(entry["top_logprobs"] == [] for entry in entries)


def test_no_logprobs_unless_asked(client, engine, monkeypatch):
    def refuse(*args):
        raise AssertionError("a request without logprobs must not pay for them")

    monkeypatch.setattr(ScriptedSampler, "sample_with_logprobs", refuse)
    assert chat(client).json()["choices"][0]["logprobs"] is None
    assert chat(client, logprobs=False).json()["choices"][0]["logprobs"] is None
    for chunk in streamed_chunks(chat(client, stream=True)):
        assert all(choice["logprobs"] is None for choice in chunk["choices"])


def test_each_streamed_chunk_carries_the_logprobs_of_its_own_text(client):
    chunks = streamed_chunks(chat(client, logprobs=True, top_logprobs=1, stream=True, stop=["END"]))
    pieces = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    for choice in pieces:
        shown = b"".join(bytes(entry["bytes"]) for entry in choice["logprobs"]["content"])
        assert shown.decode() == choice["delta"]["content"], "a chunk's tokens are its text"
    streamed = [entry for choice in pieces for entry in choice["logprobs"]["content"]]
    whole = chat(client, logprobs=True, top_logprobs=1, stop=["END"]).json()["choices"][0]
    assert streamed == whole["logprobs"]["content"], "streamed or not, the same tokens"
    assert whole["message"]["content"] == "Hi 你好 "
    assert b"".join(bytes(e["bytes"]) for e in streamed) == "Hi 你好 ".encode(), \
        "the stop string's tokens are not reported, as its text is not shown"


def test_a_split_character_streams_its_tokens_in_one_chunk(client):
    chunks = streamed_chunks(chat(client, logprobs=True, stream=True))
    [choice] = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content") == "你"]
    assert [entry["token"] for entry in choice["logprobs"]["content"]] == ["\\xe4", "\\xbd", "\\xa0"]


def test_legacy_completion_logprobs(client):
    body = client.post("/v1/completions", json={"prompt": "Once", "logprobs": 1, "max_tokens": 6}).json()
    choice = body["choices"][0]
    assert choice["text"] == "Hi 你"
    logprobs = choice["logprobs"]
    assert set(logprobs) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert logprobs["tokens"] == ["H", "i", " ", "\\xe4", "\\xbd", "\\xa0"]
    assert logprobs["text_offset"] == [0, 1, 2, 3, 3, 3], "the three bytes of 你 all begin at its place"
    assert logprobs["token_logprobs"][0] == pytest.approx(CHOSEN)
    assert logprobs["top_logprobs"][0] == {"H": pytest.approx(CHOSEN)}


def test_legacy_completion_logprobs_stream(client):
    response = client.post("/v1/completions", json={"prompt": "Once", "logprobs": 0, "max_tokens": 3, "stream": True})
    chunks = [c for c in streamed_chunks(response) if c["choices"] and c["choices"][0]["text"]]
    assert [c["choices"][0]["logprobs"]["tokens"] for c in chunks] == [["H"], ["i"], [" "]]
    assert [c["choices"][0]["logprobs"]["text_offset"] for c in chunks] == [[0], [1], [2]], \
        "offsets count from the start of the whole completion"


def test_ollama_logprobs(client):
    body = client.post("/api/chat", json={"messages": MESSAGES, "stream": False, "logprobs": True,
                                          "top_logprobs": 1}).json()
    assert body["logprobs"][0] == {"token": "H", "logprob": pytest.approx(CHOSEN), "bytes": [72],
                                   "top_logprobs": [{"token": "H", "logprob": pytest.approx(CHOSEN), "bytes": [72]}]}
    lines = [json.loads(line) for line in client.post("/api/generate", json={
        "prompt": "hi", "logprobs": True, "options": {"stop": ["END"]}}).text.splitlines()]
    pieces = [line for line in lines if not line["done"]]
    assert all(line["logprobs"] for line in pieces) and "logprobs" not in lines[-1]
    assert b"".join(bytes(e["bytes"]) for line in pieces for e in line["logprobs"]) == "Hi 你好 ".encode()
    assert "logprobs" not in client.post("/api/chat", json={"messages": MESSAGES, "stream": False}).json()


@pytest.mark.parametrize("path,fields,param", [
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": "yes"}, "logprobs"),
    ("/v1/completions", {"logprobs": 6}, "logprobs"),
    ("/v1/completions", {"logprobs": True}, "logprobs"),
    ("/v1/completions", {"logprobs": 1, "echo": True}, "echo"),
    ("/api/chat", {"top_logprobs": 2}, "top_logprobs"),
])
def test_bad_logprobs_requests_are_400_naming_the_field(client, path, fields, param):
    body = {"messages": MESSAGES} if path != "/v1/completions" else {"prompt": "Once"}
    response = client.post(path, json={**body, **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    if path.startswith("/api/"):
        assert param in error
    else:
        assert error["param"] == param and param in error["message"]


def test_the_websocket_sends_logprobs_with_each_token(client):
    with client.websocket_connect(LOCAL_WS) as socket:
        socket.send_json({"type": "chat", "messages": MESSAGES, "logprobs": True})
        tokens = []
        while (event := socket.receive_json())["type"] != "done":
            if event["type"] == "token":
                tokens.append(event)
    assert all(event["logprobs"] for event in tokens)
    assert b"".join(bytes(e["bytes"]) for event in tokens for e in event["logprobs"]) == "Hi 你好 END more".encode()


def test_the_openai_client_reads_them(client):
    api = openai.OpenAI(base_url=f"{LOCAL_URL}/v1", api_key="unused", http_client=client, max_retries=0)
    chat = api.chat.completions.create(model="m", messages=MESSAGES, logprobs=True, top_logprobs=2).choices[0]
    first = chat.logprobs.content[0]
    assert (first.token, first.bytes, first.top_logprobs[1].token) == ("H", [72], "I")
    chunks = list(api.chat.completions.create(model="m", messages=MESSAGES, logprobs=True, stream=True))
    assert [e.token for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content][:2] \
        == ["H", "i"]
    legacy = api.completions.create(model="m", prompt="Once", max_tokens=3, logprobs=2).choices[0].logprobs
    assert legacy.tokens == ["H", "i", " "] and legacy.text_offset == [0, 1, 2]
