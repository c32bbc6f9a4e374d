"""The conversation store's own behaviour: conversations, branches, answers recorded as they
stream, and the file it keeps them in."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from jisu.history import (
    CUT_SHORT, STREAMING, AnswerNotStreaming, AnswerRecorder, AnswerStats, ConversationNotFound,
    ConversationStore, MessageNotFound, StoreClosed, default_history_path,
)
from jisu.history.store import STREAMING_STALE_S

USER = "local"


class Clock:
    """Time that moves only when a test says so, a second per reading by default, so every
    write has its own time and 'newest first' is never a tie."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.now += 1.0
            return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    with ConversationStore(tmp_path / "history.db", clock=clock) as store:
        yield store


def chat(store, turns, user=USER, title=""):
    """A conversation of (question, answer) turns, each answer streamed and finished."""
    conversation = store.create_conversation(user, title=title)
    parent = None
    for question, answer in turns:
        parent = store.add_message(user, conversation.id, parent_id=parent, role="user", content=question).id
        recorder = AnswerRecorder.begin(store, user, conversation.id, parent_id=parent, model="qwen")
        recorder.add(answer)
        parent = recorder.finish("stop").id
    return conversation.id


def test_the_file_is_under_jisu_home_and_private(isolated_jisu_home):
    with ConversationStore() as store:
        chat(store, [("hi", "hello")])
        assert store.path == default_history_path() == isolated_jisu_home / "history.db"
        for path in isolated_jisu_home.iterdir():  # the -wal and -shm files too
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path.name


def test_a_conversation_is_created_listed_renamed_and_deleted(store):
    first = store.create_conversation(USER, title="First", system="Answer in French.")
    second = store.create_conversation(USER, title="Second")
    assert first.id.startswith("conv_") and len(first.id) > 20, "ids must be unguessable"
    page = store.list_conversations(USER)
    assert [summary.id for summary in page.items] == [second.id, first.id], "newest updated first"
    assert page.total == 2

    renamed = store.update_conversation(USER, first.id, title="Renamed")
    assert (renamed.title, renamed.system) == ("Renamed", "Answer in French.")
    assert store.list_conversations(USER).items[0].id == first.id, "a change moves it to the top"
    assert store.update_conversation(USER, first.id, system=None).system is None
    with pytest.raises(ValueError, match="title"):
        store.update_conversation(USER, first.id, title=None)

    store.delete_conversation(USER, first.id)
    with pytest.raises(ConversationNotFound):
        store.get_conversation(USER, first.id)
    with pytest.raises(ConversationNotFound):
        store.delete_conversation(USER, first.id)
    assert store.list_conversations(USER).total == 1


def test_lists_come_in_pages_with_the_total(store):
    ids = [store.create_conversation(USER, title=f"chat {number}").id for number in range(7)]
    pages = [store.list_conversations(USER, limit=3, offset=offset) for offset in (0, 3, 6, 9)]
    assert [len(page.items) for page in pages] == [3, 3, 1, 0]
    assert all(page.total == 7 for page in pages)
    assert [summary.id for page in pages for summary in page.items] == ids[::-1]
    with pytest.raises(ValueError):
        store.list_conversations(USER, limit=0)


def test_deleting_a_conversation_deletes_its_messages(store):
    conversation_id = chat(store, [("q1", "a1"), ("q2", "a2")])
    other_id = chat(store, [("q", "a")])
    store.delete_conversation(USER, conversation_id)
    with store._db.read() as connection:
        kept = connection.execute("SELECT DISTINCT conversation_id FROM messages").fetchall()
    assert [row[0] for row in kept] == [other_id]


def test_an_edit_is_a_sibling_and_the_new_branch_is_shown(store):
    conversation_id = chat(store, [("What is 2+2?", "4"), ("And 3+3?", "6")])
    first_question, first_answer, second_question, _ = store.get_conversation(USER, conversation_id).messages

    edited = store.add_message(USER, conversation_id, parent_id=first_answer.id, role="user", content="And 5+5?")
    assert edited.parent_id == second_question.parent_id
    assert edited.siblings.ids == (second_question.id, edited.id) and edited.siblings.index == 1

    shown = store.get_conversation(USER, conversation_id)
    assert [message.content for message in shown.messages] == ["What is 2+2?", "4", "And 5+5?"]
    assert shown.active_leaf_id == edited.id
    assert (shown.messages[2].siblings.index, shown.messages[2].siblings.count) == (1, 2), "the page shows 2/2"
    assert store.history_for_model(USER, conversation_id) == [
        {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 5+5?"}]


def test_regenerating_keeps_both_answers(store):
    conversation_id = chat(store, [("Name a colour.", "Red.")])
    question, first = store.get_conversation(USER, conversation_id).messages
    recorder = AnswerRecorder.begin(store, USER, conversation_id, parent_id=question.id)
    recorder.add("Blue.")
    second = recorder.finish("stop")
    assert second.siblings.ids == (first.id, second.id)
    shown = store.get_conversation(USER, conversation_id)
    assert shown.messages[-1].content == "Blue."
    assert store.history_for_model(USER, conversation_id, up_to=question.id) == [
        {"role": "user", "content": "Name a colour."}], "a regeneration sends the history up to the question"


def test_switching_shows_the_latest_continuation_of_a_branch(store):
    conversation_id = chat(store, [("q1", "a1"), ("q2", "a2"), ("q3", "a3")])
    q1, a1, q2, a2, q3, a3 = store.get_conversation(USER, conversation_id).messages
    edit = store.add_message(USER, conversation_id, parent_id=a1.id, role="user", content="q2 edited")

    back = store.switch_branch(USER, conversation_id, q2.id)
    assert back.active_leaf_id == a3.id, "the old branch comes back whole, down to its last answer"
    assert [message.content for message in back.messages] == ["q1", "a1", "q2", "a2", "q3", "a3"]
    assert back.messages[2].siblings.index == 0
    assert store.history_for_model(USER, conversation_id)[-1] == {"role": "assistant", "content": "a3"}

    # A branch written to later than the other wins below a shared message.
    store.switch_branch(USER, conversation_id, a2.id)
    store.add_message(USER, conversation_id, parent_id=a2.id, role="user", content="q3 edited")
    assert store.switch_branch(USER, conversation_id, q1.id).messages[-1].content == "q3 edited"
    assert store.switch_branch(USER, conversation_id, edit.id).active_leaf_id == edit.id
    with pytest.raises(MessageNotFound):
        store.switch_branch(USER, conversation_id, "msg_nope")


def test_the_first_message_can_be_edited_too(store):
    conversation_id = chat(store, [("hi", "hello")])
    first = store.get_conversation(USER, conversation_id).messages[0]
    again = store.add_message(USER, conversation_id, parent_id=None, role="user", content="hey")
    assert again.siblings.ids == (first.id, again.id)
    assert [message.content for message in store.get_conversation(USER, conversation_id).messages] == ["hey"]


def test_the_system_prompt_goes_first_in_the_history(store):
    conversation = store.create_conversation(USER, system="Be brief.")
    store.add_message(USER, conversation.id, parent_id=None, role="user", content="hi")
    assert store.history_for_model(USER, conversation.id) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def test_a_parent_must_be_in_the_same_conversation(store):
    one, other = chat(store, [("q", "a")]), chat(store, [("q", "a")])
    foreign_parent = store.get_conversation(USER, other).active_leaf_id
    with pytest.raises(MessageNotFound):
        store.add_message(USER, one, parent_id=foreign_parent, role="user", content="x")
    with pytest.raises(ValueError, match="role"):
        store.add_message(USER, one, parent_id=None, role="wizard", content="x")


def test_an_answer_is_recorded_as_it_streams(store):
    conversation = store.create_conversation(USER)
    question = store.add_message(USER, conversation.id, parent_id=None, role="user", content="Count to 3.")
    answer = store.begin_answer(USER, conversation.id, parent_id=question.id, model="qwen", quantization="iq4_nl")
    assert (answer.state, answer.content) == (STREAMING, "")
    store.append_answer(USER, answer.id, "1, ")
    store.append_answer(USER, answer.id, "2, ")
    shown = store.get_conversation(USER, conversation.id).messages[-1]
    assert (shown.content, shown.state) == ("1, 2, ", STREAMING), "a page reloaded mid-answer sees the text so far"

    stats = AnswerStats(prompt_tokens=12, completion_tokens=5, time_to_first_token_s=0.2, tokens_per_s=30.0)
    finished = store.finish_answer(USER, answer.id, finish_reason="stop", stats=stats, text="3.")
    assert (finished.content, finished.state, finished.cut_short) == ("1, 2, 3.", "complete", False)
    assert (finished.model, finished.quantization, finished.finish_reason) == ("qwen", "iq4_nl", "stop")
    assert (finished.prompt_tokens, finished.completion_tokens) == (12, 5)
    assert (finished.time_to_first_token_s, finished.tokens_per_s) == (0.2, 30.0)
    with pytest.raises(AnswerNotStreaming):
        store.append_answer(USER, answer.id, "4")
    with pytest.raises(AnswerNotStreaming):
        store.finish_answer(USER, answer.id, finish_reason="stop")
    with pytest.raises(MessageNotFound):
        store.append_answer(USER, "msg_nope", "x")


def test_a_stopped_answer_is_cut_short_with_its_text(store):
    conversation = store.create_conversation(USER)
    question = store.add_message(USER, conversation.id, parent_id=None, role="user", content="Tell a story.")
    recorder = AnswerRecorder.begin(store, USER, conversation.id, parent_id=question.id)
    recorder.add("Once upon")
    stopped = recorder.finish("cancelled", cut_short=True)
    assert (stopped.content, stopped.state, stopped.cut_short) == ("Once upon", CUT_SHORT, True)


def test_the_recorder_writes_a_few_times_a_second_not_per_token(store):
    conversation = store.create_conversation(USER)
    question = store.add_message(USER, conversation.id, parent_id=None, role="user", content="go")
    now = [0.0]
    recorder = AnswerRecorder(store, USER, store.begin_answer(USER, conversation.id, parent_id=question.id).id,
                              interval_s=0.25, clock=lambda: now[0])
    writes = []
    store_append = store.append_answer
    store.append_answer = lambda *args: (writes.append(args[2]), store_append(*args))
    for token in range(18):  # 16 tokens a second (a time step exact in binary)
        now[0] += 1 / 16
        recorder.add(f"{token} ")
    assert writes == ["0 1 2 3 ", "4 5 6 7 ", "8 9 10 11 ", "12 13 14 15 "], "every 0.25 s, not per token"
    assert store.get_conversation(USER, conversation.id).messages[-1].content == "".join(writes)
    assert recorder.finish("stop").content == "".join(f"{token} " for token in range(18))


def test_recover_marks_answers_a_dead_server_left_streaming(store):
    conversation = store.create_conversation(USER)
    question = store.add_message(USER, conversation.id, parent_id=None, role="user", content="q")
    answer = store.begin_answer(USER, conversation.id, parent_id=question.id)
    store.append_answer(USER, answer.id, "half an ans")
    assert store.recover() == 1
    shown = store.get_conversation(USER, conversation.id).messages[-1]
    assert (shown.content, shown.state) == ("half an ans", CUT_SHORT)
    assert store.recover() == 0


def test_an_answer_nobody_writes_to_any_more_reads_as_cut_short(store, clock):
    conversation = store.create_conversation(USER)
    question = store.add_message(USER, conversation.id, parent_id=None, role="user", content="q")
    answer = store.begin_answer(USER, conversation.id, parent_id=question.id)
    store.append_answer(USER, answer.id, "partial")
    assert store.get_conversation(USER, conversation.id).messages[-1].state == STREAMING
    clock.now += STREAMING_STALE_S + 1
    assert store.get_conversation(USER, conversation.id).messages[-1].state == CUT_SHORT
    store.append_answer(USER, answer.id, " more")  # its writer was only slow: it goes on
    assert store.get_conversation(USER, conversation.id).messages[-1].state == STREAMING


def test_a_closed_store_says_so(tmp_path):
    store = ConversationStore(tmp_path / "history.db")
    store.close()
    with pytest.raises(StoreClosed):
        store.list_conversations(USER)


def test_messages_serialise_for_the_api(store):
    conversation_id = chat(store, [("q", "a")])
    data = store.get_conversation(USER, conversation_id).to_dict()
    assert set(data) >= {"id", "title", "created_at", "updated_at", "messages"}
    answer = data["messages"][1]
    assert answer["siblings"] == {"ids": (answer["id"],), "index": 0, "count": 1}
    assert answer["cut_short"] is False and answer["parent_id"] == data["messages"][0]["id"]
