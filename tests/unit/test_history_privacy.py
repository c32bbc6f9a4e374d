"""User B can do nothing with user A's conversations: every method answers as if A's ids did
not exist (NotFound, which the API turns into 404), and nothing of A's changes or leaks."""

from __future__ import annotations

import pytest

from jisu.history import AnswerStats, ConversationNotFound, ConversationStore, MessageNotFound, NotFound

ALICE, BOB = "alice", "bob"


@pytest.fixture
def store(tmp_path):
    with ConversationStore(tmp_path / "history.db") as store:
        yield store


@pytest.fixture
def alices(store):
    """Alice's conversation: a question about 北京 and an answer still streaming."""
    conversation = store.create_conversation(ALICE, title="Alice's secret plans", system="Be discreet.")
    question = store.add_message(ALICE, conversation.id, parent_id=None, role="user",
                                 content="我昨天去了北京的故宫 and the secret vault")
    answer = store.begin_answer(ALICE, conversation.id, parent_id=question.id)
    store.append_answer(ALICE, answer.id, "The vault is")
    return conversation.id, question.id, answer.id


# Each is what Bob tries with the ids of Alice's conversation, question and streaming answer.
ATTEMPTS = {
    "get": lambda store, c, q, a: store.get_conversation(BOB, c),
    "rename": lambda store, c, q, a: store.update_conversation(BOB, c, title="mine now"),
    "change the system prompt": lambda store, c, q, a: store.update_conversation(BOB, c, system="Tell all."),
    "delete": lambda store, c, q, a: store.delete_conversation(BOB, c),
    "add a message": lambda store, c, q, a: store.add_message(BOB, c, parent_id=q, role="user", content="x"),
    "begin an answer": lambda store, c, q, a: store.begin_answer(BOB, c, parent_id=q),
    "append to her answer": lambda store, c, q, a: store.append_answer(BOB, a, "hijacked"),
    "finish her answer": lambda store, c, q, a: store.finish_answer(BOB, a, finish_reason="stop",
                                                                     stats=AnswerStats(), text="x"),
    "switch her branch": lambda store, c, q, a: store.switch_branch(BOB, c, q),
    "read her history": lambda store, c, q, a: store.history_for_model(BOB, c),
    "export it as JSON": lambda store, c, q, a: store.export_json(BOB, c),
    "export it as Markdown": lambda store, c, q, a: store.export_markdown(BOB, c),
    "read its tree": lambda store, c, q, a: store.conversation_tree(BOB, c),
}


@pytest.mark.parametrize("attempt", list(ATTEMPTS))
def test_bob_cannot_touch_alices_conversation(store, alices, attempt):
    before = store.export_json(ALICE, alices[0])
    with pytest.raises(NotFound) as refused:
        ATTEMPTS[attempt](store, *alices)
    missing = pytest.raises(type(refused.value))
    with missing:  # the same outcome as an id that does not exist at all
        ATTEMPTS[attempt](store, "conv_doesnotexist", "msg_doesnotexist", "msg_doesnotexist")
    assert "secret" not in str(refused.value) and "北京" not in str(refused.value)
    assert store.export_json(ALICE, alices[0]) == before, "nothing of Alice's may change"


def test_bob_neither_lists_searches_nor_exports_alices(store, alices):
    store.create_conversation(BOB, title="Bob's own")
    assert [summary.title for summary in store.list_conversations(BOB).items] == ["Bob's own"]
    assert store.list_conversations(BOB).total == 1
    for words in ("secret", "北京", "故宫", "vault", "Alice"):
        assert store.search(BOB, words).total == 0, words
        assert store.search(ALICE, words).total == 1, words
    exported = store.export_all_json(BOB)
    assert [conversation["title"] for conversation in exported["conversations"]] == ["Bob's own"]


def test_the_same_import_is_separate_per_user(store, alices):
    document = store.export_json(ALICE, alices[0])
    assert store.import_file(ALICE, document).skipped == 1, "Alice has it already"
    imported = store.import_file(BOB, document)
    assert len(imported.imported) == 1, "Bob gets his own copy, with ids of its own"
    assert imported.imported[0] != alices[0]
    with pytest.raises(ConversationNotFound):
        store.get_conversation(ALICE, imported.imported[0])


def test_a_message_of_alices_is_no_parent_for_bob(store, alices):
    bobs = store.create_conversation(BOB)
    with pytest.raises(MessageNotFound):
        store.add_message(BOB, bobs.id, parent_id=alices[1], role="user", content="x")
