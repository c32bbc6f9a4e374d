"""Export and import: jisu's JSON round trip is exact but for ids, a second import of the same
file adds nothing, ChatGPT's export keeps its branches, and a bad file imports nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jisu.history import (
    CUT_SHORT, AnswerRecorder, AnswerStats, ConversationStore, HistoryImportError,
)
from jisu.history import store as store_module

USER = "local"
CHATGPT_EXPORT = Path(__file__).parent / "data" / "chatgpt_conversations.json"


@pytest.fixture
def store(tmp_path):
    with ConversationStore(tmp_path / "history.db") as store:
        yield store


@pytest.fixture
def other_store(tmp_path):
    with ConversationStore(tmp_path / "other" / "history.db") as store:
        yield store


def branched_conversation(store, user=USER):
    """A conversation with a system prompt, an edited question, a regenerated answer with
    stats, and an answer that was cut short."""
    conversation = store.create_conversation(user, title="Résumé 简历 help", system="You are a careful editor.")
    question = store.add_message(user, conversation.id, parent_id=None, role="user", content="Fix my résumé.")
    first = AnswerRecorder.begin(store, user, conversation.id, parent_id=question.id, model="qwen", quantization="q8_0")
    first.add("Send it ")
    first.finish("stop", AnswerStats(prompt_tokens=20, completion_tokens=3, time_to_first_token_s=0.15,
                                     tokens_per_s=28.5))
    second = AnswerRecorder.begin(store, user, conversation.id, parent_id=question.id, model="qwen",
                                  quantization="iq4_nl")
    second.add("Paste it here and I will")
    answer = second.finish("cancelled", cut_short=True)
    store.add_message(user, conversation.id, parent_id=answer.id, role="user", content="第一段：我是工程师。")
    store.add_message(user, conversation.id, parent_id=None, role="user", content="Fix my CV.")
    store.switch_branch(user, conversation.id, question.id)
    return conversation.id


def without_ids(document):
    """The document with every id replaced by its position, so two copies compare."""
    messages = document["messages"]
    position = {message["id"]: index for index, message in enumerate(messages)}
    renamed = [{**message, "id": position[message["id"]], "parent_id": position.get(message["parent_id"])}
               for message in messages]
    return {**document, "id": None, "source_key": None, "active_leaf_id": position.get(document["active_leaf_id"]),
            "messages": renamed}


def test_the_json_export_holds_the_whole_tree(store):
    conversation_id = branched_conversation(store)
    document = store.export_json(USER, conversation_id)
    assert (document["format"], document["version"]) == ("jisu.conversation", 1)
    assert len(document["messages"]) == 5, "every branch, not just the one on show"
    assert document["source_key"] == f"jisu:{conversation_id}"
    json.dumps(document)  # nothing that JSON cannot hold


def test_round_trip_is_exact_but_for_ids(store, other_store):
    conversation_id = branched_conversation(store)
    document = store.export_json(USER, conversation_id)
    result = other_store.import_file(USER, json.dumps(document, ensure_ascii=False).encode())
    assert (len(result.imported), result.skipped) == (1, 0)
    again = other_store.export_json(USER, result.imported[0])
    assert without_ids(again) == without_ids(document)
    assert again["source_key"] == document["source_key"], "the copy remembers where it came from"
    shown = [(message.content, message.state, message.siblings.index)
             for message in store.get_conversation(USER, conversation_id).messages]
    assert [(message.content, message.state, message.siblings.index)
            for message in other_store.get_conversation(USER, result.imported[0]).messages] == shown


def test_importing_the_same_file_twice_adds_nothing(store, other_store):
    conversation_id = branched_conversation(store)
    document = store.export_json(USER, conversation_id)
    assert store.import_file(USER, document).skipped == 1, "its own export is already here"
    assert len(other_store.import_file(USER, document).imported) == 1
    assert other_store.import_file(USER, document).imported == ()
    copy_id = other_store.list_conversations(USER).items[0].id
    assert store.import_file(USER, other_store.export_json(USER, copy_id)).skipped == 1, \
        "the export of an imported copy is still the same conversation"
    assert store.list_conversations(USER).total == 1


def test_exporting_all_and_importing_them(store, other_store):
    ids = [branched_conversation(store), store.create_conversation(USER, title="empty").id]
    everything = store.export_all_json(USER)
    assert everything["format"] == "jisu.conversations"
    assert [conversation["id"] for conversation in everything["conversations"]] == ids[::-1], "newest first"
    result = other_store.import_file(USER, json.dumps(everything))
    assert (len(result.imported), result.skipped) == (2, 0)
    assert other_store.import_file(USER, json.dumps(everything)).skipped == 2
    assert other_store.get_conversation(USER, result.imported[0]).messages == ()


def test_markdown_shows_the_active_branch(store):
    conversation_id = branched_conversation(store)
    markdown = store.export_markdown(USER, conversation_id)
    assert markdown.startswith("# Résumé 简历 help\n")
    assert "## System\n\nYou are a careful editor." in markdown
    assert "## Assistant (qwen iq4_nl)\n\nPaste it here and I will\n\n*(cut short)*" in markdown
    assert "第一段：我是工程师。" in markdown
    assert "Send it" not in markdown and "Fix my CV." not in markdown, "other branches are not shown"


def test_a_chatgpt_export_keeps_its_branches(store):
    result = store.import_file(USER, CHATGPT_EXPORT.read_bytes())
    assert len(result.imported) == 2
    kyoto_id, words_id = result.imported
    kyoto = store.get_conversation(USER, kyoto_id)
    assert kyoto.title == "Weekend in Kyoto"
    assert (kyoto.created_at, kyoto.updated_at) == (1714550400.123456, 1714551000.654321)
    assert [(message.role, message.content) for message in kyoto.messages] == [
        ("user", "Plan two days in Kyoto for me, on a small budget."),
        ("assistant", "Stay in a guesthouse near Kyoto Station and buy a bus day pass.")], \
        "the active branch leads to current_node; the hidden system message is left out"
    edited, answer = kyoto.messages
    assert (edited.siblings.index, edited.siblings.count) == (1, 2), "the edit is the second of two"
    assert (answer.state, answer.model, answer.finish_reason) == (CUT_SHORT, "gpt-4o", "interrupted")

    first_branch = store.switch_branch(USER, kyoto_id, edited.siblings.ids[0])
    assert [message.content for message in first_branch.messages] == [
        "Plan two days in Kyoto for me.",
        "Day 1: Fushimi Inari at dawn, then Gion. Day 2: Arashiyama.",
        "[image]\n\nIs this temple on the way?"]
    assert first_branch.messages[0].created_at == 1714550401.5

    words = store.get_conversation(USER, words_id)
    assert [message.role for message in words.messages] == ["user", "assistant", "tool", "assistant"], \
        "the hidden custom instructions are left out; code and its output are text"
    assert words.messages[1].content.startswith("import jieba")
    assert [hit.conversation.id for hit in store.search(USER, "词频").items] == [words_id]


def test_a_chatgpt_export_imported_twice_adds_nothing(store):
    store.import_file(USER, CHATGPT_EXPORT.read_bytes())
    again = store.import_file(USER, CHATGPT_EXPORT.read_text(encoding="utf-8"))
    assert (again.imported, again.skipped) == ((), 2)
    assert store.list_conversations(USER).total == 2


def chatgpt_with(**changes):
    conversations = json.loads(CHATGPT_EXPORT.read_text(encoding="utf-8"))
    conversations[1].update(changes)
    return conversations


def jisu_with(store, change):
    document = store.export_json("someone else", branched_conversation(store, user="someone else"))
    change(document)
    return document


def cycle(document):
    first, second = document["messages"][:2]
    first["parent_id"] = second["id"]


BAD_FILES = {
    "not JSON": lambda store: b"{not json",
    "not UTF-8": lambda store: b"\xff\xfe\x00binary",
    "an unrelated JSON object": lambda store: {"hello": "world"},
    "an empty list": lambda store: [],
    "an unknown format": lambda store: {"format": "other.app", "version": 1},
    "a newer jisu's format": lambda store: {"format": "jisu.conversation", "version": 2},
    "a bad role": lambda store: jisu_with(store, lambda d: d["messages"][0].update(role="wizard")),
    "a missing parent": lambda store: jisu_with(store, lambda d: d["messages"][1].update(parent_id="msg_gone")),
    "a cycle": lambda store: jisu_with(store, cycle),
    "an unknown active leaf": lambda store: jisu_with(store, lambda d: d.update(active_leaf_id="msg_gone")),
    "a time that is text": lambda store: jisu_with(store, lambda d: d.update(created_at="yesterday")),
    "a NaN time": lambda store: jisu_with(store, lambda d: d.update(created_at=float("nan"))),
    "a broken second ChatGPT conversation": lambda store: chatgpt_with(mapping=[1, 2]),
    "a ChatGPT node with a missing parent": lambda store: chatgpt_with(mapping={
        "x": {"id": "x", "parent": "nowhere", "children": [], "message": None}}),
    "a ChatGPT message without an author": lambda store: chatgpt_with(mapping={
        "x": {"id": "x", "parent": None, "children": [], "message": {"content": {"parts": ["hi"]}}}}),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_refused_in_one_line_and_imports_nothing(store, case):
    kept = store.create_conversation(USER, title="kept").id
    data = BAD_FILES[case](store)
    with pytest.raises(HistoryImportError) as refused:
        store.import_file(USER, data)
    message = str(refused.value)
    assert message and "\n" not in message and len(message) < 300, message
    assert [summary.id for summary in store.list_conversations(USER).items] == [kept]


def test_a_failure_halfway_through_the_database_imports_nothing(store, monkeypatch):
    calls = []
    insert = store_module._insert_imported

    def fail_on_the_second(connection, user, conversation):
        calls.append(conversation)
        if len(calls) == 2:
            raise OSError("disk full")
        return insert(connection, user, conversation)

    monkeypatch.setattr(store_module, "_insert_imported", fail_on_the_second)
    with pytest.raises(OSError):
        store.import_file(USER, CHATGPT_EXPORT.read_bytes())
    assert store.list_conversations(USER).total == 0
    assert store.search(USER, "Kyoto").total == 0
