"""/v1/conversations over HTTP on the fake engine: every route, paging and search, branches,
export and import, and the errors each gives (OpenAI's shape, a field named where one is)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, fake_runtime
from jisu.server.app import create_app

CHATGPT_EXPORT = Path(__file__).parent / "data" / "chatgpt_conversations.json"


@pytest.fixture
def app():
    with fake_runtime(parallel=2) as runtime:
        yield create_app(runtime, max_import_bytes=64 << 10)


@pytest.fixture
def client(app):
    with TestClient(app, base_url=LOCAL_URL) as test_client:  # the store is open while the app runs
        yield test_client


def error_of(response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and "\n" not in error["message"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


def create(client, **fields) -> dict:
    response = client.post("/v1/conversations", json=fields)
    assert response.status_code == 200, response.text
    return response.json()


def turn(client, conversation_id: str, text: str | None, **fields) -> dict:
    """One answered turn (chat completion with conversation_id); text None answers again."""
    messages = [] if text is None else [{"role": "user", "content": text}]
    response = client.post("/v1/chat/completions", json={"conversation_id": conversation_id, "messages": messages,
                                                         **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_create_answers_200_with_the_empty_conversation(client):
    created = create(client, title="旅行计划", system="Answer briefly.")
    assert created["object"] == "conversation" and created["id"].startswith("conv_")
    assert (created["title"], created["system"], created["messages"]) == ("旅行计划", "Answer briefly.", [])
    assert created["created_at"] == created["updated_at"] and created["active_leaf_id"] is None
    assert create(client)["title"] == "" and create(client)["system"] is None, "both fields may be left out"


@pytest.mark.parametrize("body,param", [
    ({"title": 5}, "title"), ({"title": "x" * 501}, "title"), ({"system": ["a"]}, "system"), ({"topic": "x"}, "topic"),
])
def test_create_refuses_bad_fields(client, body, param):
    error_of(client.post("/v1/conversations", json=body), 400, param=param)


def test_list_is_newest_first_and_paged(client):
    ids = [create(client, title=f"chat {n}")["id"] for n in range(5)]
    first = client.get("/v1/conversations", params={"limit": 2}).json()
    assert first["object"] == "list" and first["total"] == 5 and first["has_more"] is True
    assert [item["id"] for item in first["data"]] == ids[::-1][:2]
    last = client.get("/v1/conversations", params={"limit": 2, "offset": 4}).json()
    assert [item["id"] for item in last["data"]] == ids[:1] and last["has_more"] is False
    assert all("messages" not in item and item["match"] is None for item in first["data"])
    turn(client, ids[0], "bring me to the top")
    assert client.get("/v1/conversations").json()["data"][0]["id"] == ids[0], "a new turn makes it the newest"


@pytest.mark.parametrize("query,param", [("limit=0", "limit"), ("limit=101", "limit"), ("offset=-1", "offset"),
                                         ("limit=ten", "limit"), ("q=" + "x" * 501, "q")])
def test_list_refuses_bad_paging(client, query, param):
    error_of(client.get(f"/v1/conversations?{query}"), 400, param=param)


def test_search_finds_words_and_says_where(client):
    trip = create(client, title="Trip")["id"]
    turn(client, trip, "我们明天去北京的故宫博物院参观")
    cooking = create(client, title="Cooking dumplings")["id"]
    found = client.get("/v1/conversations", params={"q": "故宫"}).json()
    assert [item["id"] for item in found["data"]] == [trip], "a word in the middle of a Chinese sentence"
    match = found["data"][0]["match"]
    assert "故宫" in match["snippet"]
    question = client.get(f"/v1/conversations/{trip}").json()["messages"][0]
    assert match["message_id"] == question["id"]
    by_title = client.get("/v1/conversations", params={"q": "dumplings"}).json()["data"]
    assert [(item["id"], item["match"]["message_id"]) for item in by_title] == [(cooking, None)]
    assert client.get("/v1/conversations", params={"q": "nowhere"}).json()["total"] == 0
    assert client.get("/v1/conversations", params={"q": "  "}).json()["total"] == 2, "blank words: the list"


def test_get_shows_the_active_branch_with_the_answers_stats(client):
    conversation = create(client, title="Stats")["id"]
    turn(client, conversation, "hi")
    shown = client.get(f"/v1/conversations/{conversation}").json()
    question, answer = shown["messages"]
    assert (question["role"], question["content"], question["parent_id"]) == ("user", "hi", None)
    assert (answer["role"], answer["content"], answer["parent_id"]) == ("assistant", "Hello from the fake model!",
                                                                         question["id"])
    assert (answer["state"], answer["cut_short"], answer["finish_reason"]) == ("complete", False, "stop")
    assert (answer["model"], answer["quantization"], answer["completion_tokens"]) == ("fake-model", "q4_0", 26)
    assert answer["prompt_tokens"] > 0 and answer["time_to_first_token_s"] > 0 and answer["tokens_per_s"] > 0
    assert answer["siblings"] == {"ids": [answer["id"]], "index": 0, "count": 1}
    assert shown["active_leaf_id"] == answer["id"]


def test_patch_changes_only_what_is_sent(client):
    conversation = create(client, title="Old", system="Be brief.")["id"]
    renamed = client.patch(f"/v1/conversations/{conversation}", json={"title": "New"}).json()
    assert (renamed["title"], renamed["system"]) == ("New", "Be brief.")
    cleared = client.patch(f"/v1/conversations/{conversation}", json={"system": None}).json()
    assert (cleared["title"], cleared["system"]) == ("New", None), "null removes the system prompt"
    error_of(client.patch(f"/v1/conversations/{conversation}", json={"title": None}), 400)
    error_of(client.patch(f"/v1/conversations/{conversation}", json={"colour": "red"}), 400, param="colour",
             code="unrecognized_request_argument")


def test_delete_answers_like_openai_and_the_id_is_gone(client):
    conversation = create(client)["id"]
    turn(client, conversation, "hi")
    deleted = client.delete(f"/v1/conversations/{conversation}")
    assert deleted.json() == {"id": conversation, "object": "conversation.deleted", "deleted": True}
    for response in (client.get(f"/v1/conversations/{conversation}"), client.delete(f"/v1/conversations/{conversation}")):
        error_of(response, 404, code="conversation_not_found")
    assert client.get("/v1/conversations").json()["total"] == 0


def test_an_edit_is_a_new_branch_and_switch_shows_the_old_one(client):
    conversation = create(client)["id"]
    first = turn(client, conversation, "first question")
    edited = client.post(f"/v1/conversations/{conversation}/messages",
                         json={"content": "first question, edited", "parent_id": None})
    assert edited.status_code == 200, edited.text
    assert edited.json()["siblings"]["count"] == 2 and edited.json()["siblings"]["index"] == 1
    shown = client.get(f"/v1/conversations/{conversation}").json()
    assert [m["content"] for m in shown["messages"]] == ["first question, edited"], "the edit shows, unanswered"
    answered = turn(client, conversation, None)  # answer the edit
    assert answered["parent_message_id"] == edited.json()["id"]

    old = client.post(f"/v1/conversations/{conversation}/switch", json={"message_id": first["parent_message_id"]})
    assert [m["content"] for m in old.json()["messages"]] == ["first question", "Hello from the fake model!"], \
        "the old branch shows to its latest reply"
    assert old.json()["active_leaf_id"] == first["message_id"]


def test_adding_a_message_follows_the_active_branch_unless_told(client):
    conversation = create(client)["id"]
    turn(client, conversation, "question")
    added = client.post(f"/v1/conversations/{conversation}/messages", json={"content": "and another"}).json()
    answer = client.get(f"/v1/conversations/{conversation}").json()["messages"][1]
    assert added["parent_id"] == answer["id"] and added["role"] == "user"
    written = client.post(f"/v1/conversations/{conversation}/messages",
                          json={"role": "assistant", "content": "written elsewhere"}).json()
    assert written["parent_id"] == added["id"] and written["state"] == "complete"
    error_of(client.post(f"/v1/conversations/{conversation}/messages", json={"role": "system", "content": "x"}),
             400, param="role")
    error_of(client.post(f"/v1/conversations/{conversation}/messages", json={"content": "x", "parent_id": "msg_no"}),
             404, code="message_not_found")
    error_of(client.post(f"/v1/conversations/{conversation}/switch", json={"message_id": "msg_no"}), 404,
             code="message_not_found")


def test_unknown_and_oversized_ids_are_refused(client):
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/messages"), ("POST", "/switch"),
                         ("GET", "/export")):
        body = {"content": "x"} if path == "/messages" else {"message_id": "m"} if path == "/switch" else \
            {} if method == "PATCH" else None
        missing = client.request(method, f"/v1/conversations/conv_nothing{path}", json=body)
        error_of(missing, 404, code="conversation_not_found")
        too_long = client.request(method, f"/v1/conversations/{'c' * 101}{path}", json=body)
        error_of(too_long, 400, param="conversation_id")


def test_export_one_as_json_or_markdown_files(client):
    conversation = create(client, title="Export me", system="Be kind.")["id"]
    turn(client, conversation, "what is 2+2?")
    as_json = client.get(f"/v1/conversations/{conversation}/export")
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.headers["content-disposition"] == f'attachment; filename="{conversation}.json"'
    document = as_json.json()
    assert (document["format"], document["id"], document["title"]) == ("jisu.conversation", conversation, "Export me")
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"]

    as_markdown = client.get(f"/v1/conversations/{conversation}/export", params={"format": "md"})
    assert as_markdown.headers["content-type"] == "text/markdown; charset=utf-8"
    assert as_markdown.headers["content-disposition"] == f'attachment; filename="{conversation}.md"'
    assert as_markdown.text.startswith("# Export me") and "## User\n\nwhat is 2+2?" in as_markdown.text
    assert "## System\n\nBe kind." in as_markdown.text
    error_of(client.get(f"/v1/conversations/{conversation}/export", params={"format": "pdf"}), 400, param="format")


def test_export_all_and_import_it_back(client):
    for title in ("one", "two"):
        turn(client, create(client, title=title)["id"], f"question of {title}")
    exported = client.get("/v1/conversations/export")
    assert exported.headers["content-disposition"] == 'attachment; filename="jisu-conversations.json"'
    document = exported.json()
    assert document["format"] == "jisu.conversations"
    assert [c["title"] for c in document["conversations"]] == ["two", "one"]

    again = client.post("/v1/conversations/import", content=exported.content)
    assert again.json() == {"object": "conversation.import", "imported": [], "skipped": 2}, \
        "exported from here: already here"
    for item in client.get("/v1/conversations").json()["data"]:
        client.delete(f"/v1/conversations/{item['id']}")
    restored = client.post("/v1/conversations/import", content=exported.content).json()
    assert len(restored["imported"]) == 2 and restored["skipped"] == 0
    titles = {client.get(f"/v1/conversations/{i}").json()["title"] for i in restored["imported"]}
    assert titles == {"one", "two"}
    back = client.get(f"/v1/conversations/{restored['imported'][0]}/export").json()
    assert [m["content"] for m in back["messages"]] == [m["content"] for m in document["conversations"][0]["messages"]]


def test_import_a_chatgpt_export(client):
    response = client.post("/v1/conversations/import", content=CHATGPT_EXPORT.read_bytes(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    kyoto, words = response.json()["imported"]
    assert client.get(f"/v1/conversations/{kyoto}").json()["title"] == "Weekend in Kyoto"
    assert [item["id"] for item in client.get("/v1/conversations", params={"q": "词频"}).json()["data"]] == [words]
    assert client.post("/v1/conversations/import", content=CHATGPT_EXPORT.read_bytes()).json()["skipped"] == 2


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", json.dumps({"format": "jisu.conversation"}).encode(),
                                     "\ufeff中文".encode("utf-16")])
def test_a_bad_import_file_is_a_one_line_400_and_imports_nothing(client, content):
    error = error_of(client.post("/v1/conversations/import", content=content), 400, code="invalid_import")
    assert error["message"].startswith("Cannot import this file: ")
    assert client.get("/v1/conversations").json()["total"] == 0


def test_an_import_over_its_limit_is_413(client):
    big = json.dumps({"format": "jisu.conversations", "version": 1, "conversations": [], "pad": "x" * (70 << 10)})
    error_of(client.post("/v1/conversations/import", content=big.encode()), 413, code="request_too_large")


def test_without_a_store_conversations_are_503_and_chat_still_works(tmp_path):
    broken = tmp_path / "history.db"
    broken.write_bytes(b"this is not a database" * 100)
    with fake_runtime(parallel=1) as runtime:
        with TestClient(create_app(runtime, history_path=broken), base_url=LOCAL_URL) as client:
            error = error_of(client.get("/v1/conversations"), 503, code="history_unavailable")
            assert str(broken) in error["message"]
            chat = {"messages": [{"role": "user", "content": "hi"}]}
            assert client.post("/v1/chat/completions", json=chat).status_code == 200
            error_of(client.post("/v1/chat/completions", json={**chat, "conversation_id": "conv_x"}), 503,
                     code="history_unavailable")


def test_the_schema_documents_the_routes_and_the_chat_fields(app):
    schema = app.openapi()
    paths = {path: set(methods) for path, methods in schema["paths"].items() if path.startswith("/v1/conversations")}
    assert paths == {
        "/v1/conversations": {"get", "post"}, "/v1/conversations/export": {"get"},
        "/v1/conversations/import": {"post"}, "/v1/conversations/{conversation_id}": {"get", "patch", "delete"},
        "/v1/conversations/{conversation_id}/messages": {"post"},
        "/v1/conversations/{conversation_id}/switch": {"post"},
        "/v1/conversations/{conversation_id}/export": {"get"}}
    chat = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {"conversation_id", "parent_message_id"} <= set(chat)
    assert "404" in schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    conversation = schema["components"]["schemas"]["ConversationObject"]["properties"]
    assert {"id", "title", "created_at", "updated_at", "messages"} <= set(conversation)
