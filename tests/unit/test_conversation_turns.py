"""Chat completions and the WebSocket with `conversation_id`, on the fake engine: the stored
history goes in front of the prompt, the turn is stored with its ids in the response, the
answer is recorded as it streams (cut short when the client leaves or the server stops), a
refused turn stores nothing, and the store is never called on the event loop."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, LOCAL_WS, FakeEngine, fake_runtime
from jisu.history import AnswerRecorder, ConversationStore
from jisu.server.app import create_app
from live_server import serving_in_thread
from streams import DONE, answer_text, chunk_content, receive_until, sse_events, sse_payload, wait_until, ws_text

ANSWER = "Hello from the fake model!"
IDS = {"conversation_id", "message_id", "parent_message_id"}


@pytest.fixture
def engine():
    engine = FakeEngine()
    engine.prompts = []  # what the model was given to read, turn by turn

    def answer(prompt: str) -> str:
        engine.prompts.append(prompt)
        return ANSWER

    engine.answer = answer
    return engine


@pytest.fixture
def store_off_the_loop(monkeypatch):
    """Fails a test in which the store is called on a thread running an event loop: SQLite
    blocks, and that loop sends every streaming answer's tokens."""
    calls_on_the_loop = []
    for name in ("get_conversation", "history_for_model", "add_message", "begin_answer", "append_answer",
                 "finish_answer", "create_conversation", "list_conversations"):
        method = getattr(ConversationStore, name)

        def checked(self, *args, _method=method, _name=name, **kwargs):
            if asyncio._get_running_loop() is not None:
                calls_on_the_loop.append(_name)
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(ConversationStore, name, checked)
    yield
    assert not calls_on_the_loop, f"store calls on the event loop: {calls_on_the_loop}"


@pytest.fixture
def client(engine, store_off_the_loop):
    with fake_runtime(engine, parallel=2, max_queue=0) as runtime:
        with TestClient(create_app(runtime), base_url=LOCAL_URL) as test_client:
            yield test_client


def new_conversation(client, **fields) -> str:
    return client.post("/v1/conversations", json=fields).json()["id"]


def ask(client, conversation_id: str | None, text: str | None, **fields):
    body = {"messages": [] if text is None else [{"role": "user", "content": text}], **fields}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    return client.post("/v1/chat/completions", json=body)


def messages_of(client, conversation_id: str) -> list[dict]:
    return client.get(f"/v1/conversations/{conversation_id}").json()["messages"]


def test_a_turn_is_stored_and_the_response_names_it(client):
    conversation = new_conversation(client)
    body = ask(client, conversation, "hi").json()
    assert body["choices"][0]["message"]["content"] == ANSWER, "an OpenAI response, as without a conversation"
    question, answer = messages_of(client, conversation)
    assert body["conversation_id"] == conversation
    assert (body["parent_message_id"], body["message_id"]) == (question["id"], answer["id"])
    assert (answer["content"], answer["state"]) == (ANSWER, "complete"), \
        "the record is written before the response ends"


def test_a_streamed_turn_names_it_on_the_first_and_the_finishing_chunk(client):
    conversation = new_conversation(client)
    response = ask(client, conversation, "hi", stream=True, stream_options={"include_usage": True})
    data, _ = sse_events(response.text)
    assert data[-1] == DONE
    role, *content, finish, usage = data[:-1]
    assert answer_text(content) == ANSWER
    question, answer = messages_of(client, conversation)
    ids = {"conversation_id": conversation, "message_id": answer["id"], "parent_message_id": question["id"]}
    assert {key: role[key] for key in IDS} == ids and {key: finish[key] for key in IDS} == ids
    assert not any(IDS & set(chunk) for chunk in [*content, usage]), "the chunks in between stay as OpenAI's"
    assert answer["state"] == "complete" and answer["completion_tokens"] == usage["usage"]["completion_tokens"]


def test_the_model_reads_the_stored_history_and_reuses_the_conversations_cache(client, engine):
    conversation = new_conversation(client, system="You are terse.")
    first = ask(client, conversation, "first question").json()
    second = ask(client, conversation, "second question").json()
    prompt = engine.prompts[-1]
    order = [prompt.index(part) for part in ("You are terse.", "first question", ANSWER, "second question")]
    assert order == sorted(order), prompt
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= \
        first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"], \
        "turn 2 runs only its new message: turn 1 and its answer were in the conversation's slot"


def test_regenerate_answers_the_same_question_again_as_a_sibling(client, engine):
    conversation = new_conversation(client)
    first = ask(client, conversation, "question").json()
    again = ask(client, conversation, None, parent_message_id=first["parent_message_id"]).json()
    assert engine.prompts[-1] == engine.prompts[-2], "the same history, without the old answer"
    assert again["parent_message_id"] == first["parent_message_id"] and again["message_id"] != first["message_id"]
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == again["usage"]["prompt_tokens"], \
        "the whole prompt, and its logits, were kept in the conversation's slot"
    question, answer = messages_of(client, conversation)
    assert answer["id"] == again["message_id"] and answer["siblings"]["count"] == 2


def test_an_edit_branches_from_the_parent_given(client, engine):
    conversation = new_conversation(client, system="Sys.")
    first = ask(client, conversation, "first").json()
    ask(client, conversation, "second")
    edited = ask(client, conversation, "second, edited", parent_message_id=first["message_id"]).json()
    assert "second, edited" in engine.prompts[-1] and "second<" not in engine.prompts[-1]
    assert [m["content"] for m in messages_of(client, conversation)] == ["first", ANSWER, "second, edited", ANSWER]
    root = ask(client, conversation, "a new first message", parent_message_id=None).json()
    assert "first" not in engine.prompts[-1].replace("a new first message", "") and "Sys." in engine.prompts[-1]
    assert messages_of(client, conversation)[0]["siblings"]["count"] == 2
    assert root["parent_message_id"] == messages_of(client, conversation)[0]["id"]
    assert edited["conversation_id"] == conversation


@pytest.mark.parametrize("body,param", [
    ({"parent_message_id": "msg_x", "messages": [{"role": "user", "content": "hi"}]}, "parent_message_id"),
    ({"messages": []}, "messages"),
    ({"conversation_id": "CONV", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     "messages"),
    ({"conversation_id": "CONV", "messages": [{"role": "system", "content": "a"}]}, "messages"),
    ({"conversation_id": "c" * 101, "messages": []}, "conversation_id"),
])
def test_conversation_fields_are_checked(client, body, param):
    body = {k: new_conversation(client) if v == "CONV" else v for k, v in body.items()}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text


@pytest.mark.parametrize("stream", [False, True])
def test_an_unknown_conversation_or_parent_is_404_before_any_byte(client, stream):
    conversation = new_conversation(client)
    ask(client, conversation, "hi")
    before = messages_of(client, conversation)
    for fields, param in (({"conversation_id": "conv_nothing"}, "conversation_id"),
                          ({"conversation_id": conversation, "parent_message_id": "msg_nothing"}, "parent_message_id")):
        response = client.post("/v1/chat/completions", json={
            **fields, "messages": [{"role": "user", "content": "x"}], "stream": stream})
        assert response.status_code == 404 and response.headers["content-type"] == "application/json", response.text
        assert response.json()["error"]["param"] == param
    assert messages_of(client, conversation) == before


def test_a_refused_turn_stores_nothing(client, engine):
    conversation = new_conversation(client)
    nothing_to_answer = ask(client, conversation, None)
    assert nothing_to_answer.status_code == 400 and nothing_to_answer.json()["error"]["param"] == "parent_message_id"
    too_long = ask(client, conversation, "x" * 3000)
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
    engine.step_delay_s, engine.answer = 0.01, lambda prompt: "slow " * 500
    runtime = client.app.state.serving.runtime
    hogs = [threading.Thread(target=ask, args=(client, None, f"hog {n}")) for n in range(2)]
    for hog in hogs:
        hog.start()
    wait_until(lambda: runtime.stats()["running"] == 2, "both slots are busy")
    busy = ask(client, conversation, "no room")
    for generation in list(client.app.state.serving.active):
        generation.cancel()
    for hog in hogs:
        hog.join()
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "server_busy"
    assert messages_of(client, conversation) == []


def test_the_websocket_takes_a_conversation_turn(client):
    conversation = new_conversation(client)
    with client.websocket_connect(LOCAL_WS) as socket:
        socket.send_json({"type": "chat", "conversation_id": conversation,
                          "messages": [{"role": "user", "content": "hi"}]})
        events = receive_until(socket)
        socket.send_json({"type": "chat", "conversation_id": "conv_nothing", "messages": []})
        missing = socket.receive_json()
    stored, done = events[0], events[-1]
    question, answer = messages_of(client, conversation)
    ids = {"conversation_id": conversation, "message_id": answer["id"], "parent_message_id": question["id"]}
    assert stored == {"type": "stored", **ids}
    assert done["type"] == "done" and {key: done[key] for key in IDS} == ids
    assert ws_text(events) == ANSWER == answer["content"] and answer["state"] == "complete"
    assert missing["type"] == "error" and missing["status"] == 404 and missing["error"]["param"] == "conversation_id"


@pytest.mark.parametrize("how", ["cancel", "close"])
def test_an_answer_stopped_on_the_websocket_is_kept_cut_short(client, engine, how):
    engine.step_delay_s, engine.answer = 0.01, lambda prompt: "word " * 500
    conversation = new_conversation(client)
    with client.websocket_connect(LOCAL_WS) as socket:
        socket.send_json({"type": "chat", "conversation_id": conversation,
                          "messages": [{"role": "user", "content": "tell me everything"}]})
        shown = receive_until(socket, ("token",))
        while len(ws_text(shown)) < 30:
            shown.append(socket.receive_json())
        if how == "cancel":
            socket.send_json({"type": "cancel"})
            shown += receive_until(socket)
    wait_until(lambda: messages_of(client, conversation)[-1]["state"] != "streaming", "the answer's end is written")
    answer = messages_of(client, conversation)[-1]
    assert answer["state"] == "cut_short" and answer["cut_short"] and answer["finish_reason"] == "cancelled"
    assert answer["content"].startswith(ws_text(shown)) and 30 <= len(answer["content"]) < len("word " * 500)
    if how == "cancel":
        assert answer["content"] == ws_text(shown), "what the page showed is what is kept"


def test_a_client_that_leaves_mid_stream_leaves_the_answer_cut_short(engine):
    engine.step_delay_s, engine.answer = 0.01, lambda prompt: "word " * 500
    with fake_runtime(engine, parallel=2) as runtime:
        with serving_in_thread(create_app(runtime)) as (url, _):
            conversation = httpx.post(f"{url}/v1/conversations", json={}).json()["id"]
            shown = []
            body = {"conversation_id": conversation, "stream": True,
                    "messages": [{"role": "user", "content": "tell me everything"}]}
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
                for line in response.iter_lines():
                    payload = sse_payload(line)
                    if payload is not None:
                        shown.append(payload)
                    if len(answer_text(shown)) >= 30:
                        break  # the tab is closed

            def answer():
                return httpx.get(f"{url}/v1/conversations/{conversation}").json()["messages"][-1]

            wait_until(lambda: answer()["state"] != "streaming", "the answer's end is written")
            kept = answer()
    assert kept["state"] == "cut_short" and kept["finish_reason"] == "cancelled"
    assert kept["content"].startswith(answer_text(shown)) and len(kept["content"]) < len("word " * 500)


def test_an_answer_the_server_stops_is_written_before_the_store_closes(engine, tmp_path):
    engine.step_delay_s, engine.answer = 0.01, lambda prompt: "word " * 2000
    path = tmp_path / "history.db"
    with fake_runtime(engine, parallel=2) as runtime:
        with serving_in_thread(create_app(runtime, history_path=path), grace_s=0.2) as (url, server):
            conversation = httpx.post(f"{url}/v1/conversations", json={}).json()["id"]
            body = {"conversation_id": conversation, "stream": True,
                    "messages": [{"role": "user", "content": "tell me everything"}]}
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
                lines = response.iter_lines()
                while not chunk_content(sse_payload(next(lines)) or ""):
                    pass
                server.should_exit = True
                rest = list(lines)
    assert any("server_shutdown" in line for line in rest)
    with ConversationStore(path) as store:
        answer = store.get_conversation("local", conversation).messages[-1]
    assert answer.state == "cut_short" and answer.finish_reason == "shutdown" and answer.content.startswith("word")


def test_a_long_answer_is_written_a_few_times_a_second_not_per_token(client, engine, monkeypatch):
    writes = []
    flush = AnswerRecorder.flush
    monkeypatch.setattr(AnswerRecorder, "flush", lambda self: writes.append(len(self._pending)) or flush(self))
    engine.step_delay_s, engine.answer = 0.005, lambda prompt: "x" * 200  # about a second of tokens
    conversation = new_conversation(client)
    body = ask(client, conversation, "go").json()
    seconds = body["timings"]["decode_ms"] / 1000
    assert 1 <= len(writes) <= seconds / 0.25 + 2, (writes, seconds)
    assert messages_of(client, conversation)[-1]["content"] == "x" * 200
