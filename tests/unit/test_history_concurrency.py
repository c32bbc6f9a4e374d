"""The store under load and under a crash: 8 users writing at once (threads, then processes), and
a process killed with SIGKILL in the middle of a streamed answer."""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

from jisu.history import CUT_SHORT, STREAMING, AnswerStats, ConversationStore

WRITERS = 8
TURNS = 12
PIECES = ("Sure, ", "here is ", "the answer ", "回答完毕。")


def write_turns(path: str, user: str) -> str:
    """One user's conversation of TURNS questions, each answered as the server records an
    answer: begun, appended to piece by piece, finished. Returns the conversation id."""
    with ConversationStore(path) as store:
        conversation = store.create_conversation(user, title=f"{user}'s chat")
        parent = None
        for turn in range(TURNS):
            question = store.add_message(user, conversation.id, parent_id=parent, role="user",
                                         content=f"{user} question {turn} 问题")
            answer = store.begin_answer(user, conversation.id, parent_id=question.id, model="qwen")
            for piece in PIECES:
                store.append_answer(user, answer.id, piece)
            parent = store.finish_answer(user, answer.id, finish_reason="stop",
                                         stats=AnswerStats(completion_tokens=turn)).id
            store.search(user, "问题")  # readers run among the writers
        return conversation.id


def assert_every_turn_is_there(path, users):
    with ConversationStore(path) as store:
        for user in users:
            page = store.list_conversations(user)
            assert page.total == 1, user
            messages = store.get_conversation(user, page.items[0].id).messages
            assert len(messages) == 2 * TURNS, user
            assert [message.content for message in messages[::2]] == [
                f"{user} question {turn} 问题" for turn in range(TURNS)]
            assert all(message.content == "".join(PIECES) and message.state == "complete"
                       for message in messages[1::2]), user
            assert store.search(user, "回答完毕").total == 1
    assert_database_is_sound(path)


def assert_database_is_sound(path):
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        for table in ("messages_fts", "conversations_fts"):
            connection.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")


def test_eight_threads_write_at_once(tmp_path):
    path = tmp_path / "history.db"
    users = [f"user{number}" for number in range(WRITERS)]
    errors = []
    start = threading.Barrier(WRITERS)

    def run(user):
        try:
            start.wait()
            write_turns(str(path), user)
        except BaseException as error:  # noqa: BLE001 - reported below, with the user
            errors.append((user, error))

    threads = [threading.Thread(target=run, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert_every_turn_is_there(path, users)


def test_one_store_shared_by_eight_threads(tmp_path):
    """The server's case: one ConversationStore, called from a pool of threads."""
    path = tmp_path / "history.db"
    with ConversationStore(path) as store:
        conversation_ids = {}

        def run(user):
            conversation = store.create_conversation(user)
            parent = None
            for turn in range(TURNS):
                parent = store.add_message(user, conversation.id, parent_id=parent, role="user",
                                           content=f"{user} question {turn} 问题").id
                answer = store.begin_answer(user, conversation.id, parent_id=parent)
                for piece in PIECES:
                    store.append_answer(user, answer.id, piece)
                parent = store.finish_answer(user, answer.id, finish_reason="stop").id
            conversation_ids[user] = conversation.id

        threads = [threading.Thread(target=run, args=(f"user{number}",)) for number in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(conversation_ids) == WRITERS
    assert_every_turn_is_there(path, list(conversation_ids))


def test_eight_processes_write_at_once(tmp_path):
    path = tmp_path / "history.db"
    users = [f"user{number}" for number in range(WRITERS)]
    # spawn: each process opens the file itself, as separate programs do (no inherited handles).
    with multiprocessing.get_context("spawn").Pool(WRITERS) as pool:
        pool.starmap(write_turns, [(str(path), user) for user in users])
    assert_every_turn_is_there(path, users)


KILLED_WRITER = textwrap.dedent("""
    import itertools, sys
    from jisu.history import ConversationStore

    store = ConversationStore(sys.argv[1])
    conversation = store.create_conversation("local", title="killed mid-answer")
    parent = None
    for turn in range(3):
        question = store.add_message("local", conversation.id, parent_id=parent, role="user",
                                     content=f"question {turn}")
        answer = store.begin_answer("local", conversation.id, parent_id=question.id)
        store.append_answer("local", answer.id, f"answer {turn}")
        parent = store.finish_answer("local", answer.id, finish_reason="stop").id
    question = store.add_message("local", conversation.id, parent_id=parent, role="user", content="question 3")
    answer = store.begin_answer("local", conversation.id, parent_id=question.id)
    print(conversation.id, flush=True)
    for piece in itertools.count():
        store.append_answer("local", answer.id, f"[{piece}]")
        print(piece, flush=True)  # committed
""")


def test_sigkill_mid_answer_loses_no_committed_turn(tmp_path):
    path = tmp_path / "history.db"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        conversation_id = writer.stdout.readline().strip()
        committed = -1
        while committed < 30:
            committed = int(writer.stdout.readline())
        writer.send_signal(signal.SIGKILL)  # while it keeps appending: likely mid-transaction
        writer.wait(timeout=30)
    finally:
        writer.kill()
    assert writer.returncode == -signal.SIGKILL
    assert_database_is_sound(path)

    with ConversationStore(path) as store:
        messages = store.get_conversation("local", conversation_id).messages
        assert [message.content for message in messages[:7]] == [
            "question 0", "answer 0", "question 1", "answer 1", "question 2", "answer 2", "question 3"]
        streamed = messages[7]
        assert streamed.state == STREAMING, "read within a moment of the crash, the answer still looks live"
        assert store.recover() == 1, "a restarted server marks it"
        streamed = store.get_conversation("local", conversation_id).messages[7]
        assert streamed.state == CUT_SHORT
        kept = streamed.content.count("[")
        assert kept > committed, "every append reported committed is kept"
        assert streamed.content == "".join(f"[{piece}]" for piece in range(kept)), \
            "appends are whole or absent, in order: the one in flight at the kill is not torn"
    assert_database_is_sound(path)
