"""The privacy matrix over HTTP and the WebSocket, with two NAME:KEY keys: bob can neither list,
search, read, export, rename, delete, branch nor continue alice's conversations, by any route.
Each of alice's ids answers bob exactly as a missing id does (404, never 403, never her data),
and her conversation is unchanged afterwards. Nor does bob's prompt start from alice's cached
state (what was cached shows in usage)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, LOCAL_WS, fake_runtime
from jisu.server.access import AccessPolicy
from jisu.server.app import create_app

ALICE_KEY, BOB_KEY = "alice-key-0123", "bob-key-456789"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
SECRETS = ("Alice's plan", "我的秘密问题", "Be Alice's helper")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # A module's app outlives the per-test JISU_HOME: it gets a conversation store of its own.
    history = tmp_path_factory.mktemp("history") / "history.db"
    with fake_runtime(parallel=2) as runtime:
        app = create_app(runtime, AccessPolicy.build({ALICE_KEY: "alice", BOB_KEY: "bob"}), history_path=history)
        with TestClient(app, base_url=LOCAL_URL) as test_client:
            yield test_client


@pytest.fixture(scope="module")
def alices(client):
    """Alice's conversation with one turn: its id, her question's id, her answer's id."""
    conversation = client.post("/v1/conversations", json={"title": SECRETS[0], "system": SECRETS[2]},
                               headers=ALICE).json()["id"]
    turn = client.post("/v1/chat/completions", headers=ALICE, json={
        "conversation_id": conversation, "messages": [{"role": "user", "content": SECRETS[1]}]}).json()
    return conversation, turn["parent_message_id"], turn["message_id"]


@pytest.fixture(scope="module")
def bobs(client):
    return client.post("/v1/conversations", json={"title": "Bob's own"}, headers=BOB).json()["id"]


def bob_requests(conversation: str, message: str, answer: str, own: str) -> dict[str, tuple[str, str, dict | None]]:
    """Every route bob could try alice's ids on: name -> (method, path, JSON body)."""
    chat = {"messages": [{"role": "user", "content": "continue"}]}
    return {
        "read": ("GET", f"/v1/conversations/{conversation}", None),
        "rename": ("PATCH", f"/v1/conversations/{conversation}", {"title": "mine now"}),
        "change the system prompt": ("PATCH", f"/v1/conversations/{conversation}", {"system": None}),
        "delete": ("DELETE", f"/v1/conversations/{conversation}", None),
        "export as JSON": ("GET", f"/v1/conversations/{conversation}/export", None),
        "export as Markdown": ("GET", f"/v1/conversations/{conversation}/export?format=md", None),
        "branch by adding a message": ("POST", f"/v1/conversations/{conversation}/messages", {"content": "x"}),
        "branch into his own from hers": ("POST", f"/v1/conversations/{own}/messages",
                                          {"content": "x", "parent_id": message}),
        "switch her branch": ("POST", f"/v1/conversations/{conversation}/switch", {"message_id": message}),
        "switch his to her message": ("POST", f"/v1/conversations/{own}/switch", {"message_id": answer}),
        "continue it": ("POST", "/v1/chat/completions", {**chat, "conversation_id": conversation}),
        "continue it streamed": ("POST", "/v1/chat/completions", {**chat, "conversation_id": conversation,
                                                                  "stream": True}),
        "regenerate her answer": ("POST", "/v1/chat/completions", {"conversation_id": conversation, "messages": [],
                                                                   "parent_message_id": message}),
        "continue his from her message": ("POST", "/v1/chat/completions", {**chat, "conversation_id": own,
                                                                           "parent_message_id": answer}),
    }


def as_missing(text: str, *ids: str) -> str:
    for identifier in ids:
        text = text.replace(identifier, "ID")
    return text


@pytest.mark.parametrize("route", list(bob_requests("c", "m", "a", "o")))
def test_bob_gets_what_a_missing_id_gets(client, alices, bobs, route):
    conversation, message, answer = alices
    before = client.get(f"/v1/conversations/{conversation}", headers=ALICE).json()
    method, path, body = bob_requests(conversation, message, answer, bobs)[route]
    hers = client.request(method, path, json=body, headers=BOB)
    method, path, body = bob_requests("conv_missing", "msg_missing", "msg_missing", bobs)[route]
    missing = client.request(method, path, json=body, headers=BOB)
    assert hers.status_code == 404, hers.text
    assert as_missing(hers.text, conversation, message, answer) == as_missing(missing.text, "conv_missing",
                                                                              "msg_missing"), \
        "her id and a missing one must not be told apart"
    assert not any(secret in hers.text for secret in SECRETS)
    assert client.get(f"/v1/conversations/{conversation}", headers=ALICE).json() == before, "hers is untouched"


def test_bob_lists_searches_and_exports_only_his_own(client, alices, bobs):
    listed = client.get("/v1/conversations", headers=BOB).json()
    assert [item["id"] for item in listed["data"]] == [bobs] and listed["total"] == 1
    for words in ("Alice", "秘密", "plan", "helper"):
        found = client.get("/v1/conversations", params={"q": words}, headers=BOB).json()
        assert found["total"] == 0 and found["data"] == [], words
    exported = client.get("/v1/conversations/export", headers=BOB)
    assert [c["id"] for c in exported.json()["conversations"]] == [bobs]
    assert not any(secret in exported.text for secret in SECRETS)
    assert client.get("/v1/conversations", params={"q": "秘密"}, headers=ALICE).json()["total"] == 1, \
        "while alice finds her own"


def test_bob_importing_her_export_makes_his_own_copy(client, alices):
    conversation = alices[0]
    document = client.get(f"/v1/conversations/{conversation}/export", headers=ALICE).content
    imported = client.post("/v1/conversations/import", content=document, headers=BOB).json()
    assert len(imported["imported"]) == 1 and imported["imported"][0] != conversation
    copy = imported["imported"][0]
    assert client.get(f"/v1/conversations/{copy}", headers=ALICE).status_code == 404
    assert client.delete(f"/v1/conversations/{copy}", headers=BOB).status_code == 200
    assert client.get(f"/v1/conversations/{conversation}", headers=ALICE).status_code == 200


def test_bob_cannot_continue_hers_over_the_websocket(client, alices):
    conversation, message, _ = alices
    with client.websocket_connect(LOCAL_WS, subprotocols=["jisu", f"jisu-key.{BOB_KEY}"]) as socket:
        socket.send_json({"type": "chat", "conversation_id": conversation,
                          "messages": [{"role": "user", "content": "continue"}]})
        error = socket.receive_json()
        socket.send_json({"type": "chat", "conversation_id": conversation, "messages": [],
                          "parent_message_id": message})
        again = socket.receive_json()
    for event in (error, again):
        assert event["type"] == "error" and event["status"] == 404, event
        assert not any(secret in str(event) for secret in SECRETS)
    assert len(client.get(f"/v1/conversations/{conversation}", headers=ALICE).json()["messages"]) == 2


def test_without_a_key_nothing_is_reachable(client, alices):
    for method, path in (("GET", "/v1/conversations"), ("GET", f"/v1/conversations/{alices[0]}"),
                         ("GET", "/v1/conversations/export"), ("POST", "/v1/conversations/import")):
        response = client.request(method, path)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_bobs_prompt_never_starts_from_alices_cached_state(client):
    chat = {"messages": [{"role": "user", "content": "the very same words, sent by both of them"}]}

    def cached(headers) -> int:
        return client.post("/v1/chat/completions", json=chat, headers=headers).json()["usage"][
            "prompt_tokens_details"]["cached_tokens"]

    cached(ALICE)
    assert cached(BOB) == 0, "bob would learn that someone had sent exactly this"
    assert cached(ALICE) > 0, "alice's own prompt is still reused"


def test_bobs_conversation_turns_reuse_his_own_cached_state(client, alices, bobs):
    first = client.post("/v1/chat/completions", headers=BOB, json={
        "conversation_id": bobs, "messages": [{"role": "user", "content": "hello"}]}).json()
    second = client.post("/v1/chat/completions", headers=BOB, json={
        "conversation_id": bobs, "messages": [{"role": "user", "content": "and again"}]}).json()
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] > first["usage"]["prompt_tokens"]
