"""ConversationStore: every user's conversations in one SQLite file under JISU_HOME.

Every method takes the user the request is made for, and sees that user's rows only: another
user's conversation or message id raises ConversationNotFound / MessageNotFound exactly as a
missing one does. Methods are thread-safe and each write is one short transaction, so several
threads and several processes may use one file at once (see db.py).

An answer is recorded while it streams: begin_answer() when the model starts writing it,
append_answer() with the text since the last call, a few times a second rather than per token
(AnswerRecorder does that batching), and finish_answer() at the end. What was appended is
committed: if the server dies, the answer keeps that text and reads as cut short.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jisu.config import jisu_home
from jisu.history import formats
from jisu.history.db import DEFAULT_BUSY_TIMEOUT_S, Database
from jisu.history.errors import AnswerNotStreaming, ConversationNotFound, MessageNotFound, SchemaError
from jisu.history.ids import native_source_key, new_conversation_id, new_message_id
from jisu.history.migrations import migrate
from jisu.history.records import (
    COMPLETE, CUT_SHORT, MESSAGE_ROLES, STREAMING, AnswerStats, Conversation, ConversationSummary,
    ConversationTree, ImportedConversation, ImportResult, Message, Page, SearchHit, Siblings,
)
from jisu.history.search import matching_conversations, query_terms, snippet
from jisu.history.tree import Tree

HISTORY_FILE = "history.db"
# A streaming answer not written to for this long has lost its writer (the server died, and has
# not restarted to call recover()); it reads as cut short. Longer than any pause between appends.
STREAMING_STALE_S = 120.0


def default_history_path() -> Path:
    return jisu_home() / HISTORY_FILE


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()  # update_conversation: leave this field as it is


class ConversationStore:
    def __init__(self, path: Path | str | None = None, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
                 clock: Callable[[], float] = time.time) -> None:
        """Open (or create, mode 0600) the database at `path`, default JISU_HOME/history.db, and
        bring its schema up to date. Raises SchemaError for a file written by a newer jisu."""
        self.path = Path(path) if path is not None else default_history_path()
        self._clock = clock
        self._db = Database(self.path, busy_timeout_s)
        try:
            with self._db.connection() as connection:
                migrate(connection, clock())
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise SchemaError(f"{self.path}: cannot be opened as a history database ({error})") from None
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Conversations

    def create_conversation(self, user: str, *, title: str = "", system: str | None = None) -> Conversation:
        _check_title(title)
        conversation_id = new_conversation_id()
        now = self._clock()
        with self._db.write() as connection:
            _insert_conversation(connection, conversation_id, user, title, system, now, now,
                                 native_source_key(conversation_id))
        return Conversation(id=conversation_id, title=title, system=system, created_at=now, updated_at=now,
                            active_leaf_id=None, messages=())

    def get_conversation(self, user: str, conversation_id: str) -> Conversation:
        """The conversation with its active branch, first message to active leaf."""
        with self._db.read() as connection:
            return self._conversation(connection, _owned_conversation(connection, user, conversation_id))

    def list_conversations(self, user: str, *, limit: int = 50, offset: int = 0) -> Page[ConversationSummary]:
        """The user's conversations, the most recently updated first."""
        _check_page(limit, offset)
        with self._db.read() as connection:
            total = connection.execute("SELECT COUNT(*) FROM conversations WHERE user = ?", (user,)).fetchone()[0]
            rows = connection.execute(
                "SELECT * FROM conversations WHERE user = ? ORDER BY updated_at DESC, seq DESC LIMIT ? OFFSET ?",
                (user, limit, offset)).fetchall()
        return Page(items=tuple(map(_summary, rows)), total=total, limit=limit, offset=offset)

    def update_conversation(self, user: str, conversation_id: str, *, title: str = UNCHANGED,
                            system: str | None = UNCHANGED) -> Conversation:
        """Set the title and/or the system prompt (None removes it); the rest is left as it is."""
        changes = {name: value for name, value in (("title", title), ("system", system)) if value is not UNCHANGED}
        if "title" in changes:
            _check_title(title)
        with self._db.write() as connection:
            row = _owned_conversation(connection, user, conversation_id)
            if changes:
                assignments = "".join(f"{name} = ?, " for name in changes)  # names from the line above
                connection.execute(f"UPDATE conversations SET {assignments}updated_at = ? WHERE seq = ?",
                                   (*changes.values(), self._clock(), row["seq"]))
                row = _owned_conversation(connection, user, conversation_id)
            return self._conversation(connection, row)

    def delete_conversation(self, user: str, conversation_id: str) -> None:
        """Delete the conversation and every message in it."""
        with self._db.write() as connection:
            deleted = connection.execute("DELETE FROM conversations WHERE id = ? AND user = ?",
                                         (conversation_id, user)).rowcount
        if not deleted:
            raise ConversationNotFound(conversation_id)

    # Messages and branches

    def add_message(self, user: str, conversation_id: str, *, parent_id: str | None, role: str,
                    content: str) -> Message:
        """Add a message after `parent_id` (None: as a first message) and make it the active leaf.
        A parent that already has a child gets a sibling: that is how an edit is kept."""
        if role not in MESSAGE_ROLES:
            raise ValueError(f"role must be one of {', '.join(MESSAGE_ROLES)}, not {role!r}")
        return self._insert_leaf(user, conversation_id, parent_id, role, content, COMPLETE, {})

    def switch_branch(self, user: str, conversation_id: str, message_id: str) -> Conversation:
        """Show the branch through `message_id`: the active leaf becomes the message written last
        below it (itself when nothing is), so a sibling shows its latest continuation."""
        with self._db.write() as connection:
            row = _owned_conversation(connection, user, conversation_id)
            tree = Tree(connection.execute("SELECT id, parent_id FROM messages WHERE conversation_id = ? "
                                           "ORDER BY seq", (conversation_id,)))
            if message_id not in tree:
                raise MessageNotFound(message_id)
            connection.execute("UPDATE conversations SET active_leaf_id = ? WHERE seq = ?",
                                (tree.latest_leaf_under(message_id), row["seq"]))
            return self._conversation(connection, _owned_conversation(connection, user, conversation_id))

    def history_for_model(self, user: str, conversation_id: str, *,
                          up_to: str | None = None) -> list[dict[str, str]]:
        """The branch ending at `up_to` (default: the active leaf) as OpenAI-style messages,
        [{"role", "content"}], after the conversation's system prompt when it has one. To
        regenerate an answer, pass its parent."""
        with self._db.read() as connection:
            row = _owned_conversation(connection, user, conversation_id)
            tree, rows = _messages_of(connection, conversation_id)
            leaf = row["active_leaf_id"] if up_to is None else up_to
            if leaf is not None and leaf not in tree:
                raise MessageNotFound(leaf)
        history = [{"role": "system", "content": row["system"]}] if row["system"] is not None else []
        history += [{"role": rows[i]["role"], "content": rows[i]["content"]} for i in tree.branch_to(leaf)]
        return history

    # Answers, recorded as they stream

    def begin_answer(self, user: str, conversation_id: str, *, parent_id: str | None, model: str | None = None,
                     quantization: str | None = None) -> Message:
        """An empty assistant message after `parent_id`, streaming, and the active leaf."""
        return self._insert_leaf(user, conversation_id, parent_id, "assistant", "", STREAMING,
                                 {"model": model, "quantization": quantization})

    def append_answer(self, user: str, message_id: str, text: str) -> None:
        """Add `text` (what was generated since the last call) to a streaming answer, and commit.
        Each call is a transaction: call it every ~0.25 s with what has accumulated, not per
        token. Empty text only marks the answer as still being written."""
        with self._db.write() as connection:
            updated = connection.execute(
                "UPDATE messages SET content = content || ?, written_at = ? WHERE id = ? AND state = ? "
                "AND EXISTS (SELECT 1 FROM conversations c WHERE c.id = conversation_id AND c.user = ?)",
                (text, self._clock(), message_id, STREAMING, user)).rowcount
            if not updated:
                _refuse_answer_write(connection, user, message_id)

    def finish_answer(self, user: str, message_id: str, *, finish_reason: str | None,
                      stats: AnswerStats = AnswerStats(), text: str = "", cut_short: bool = False) -> Message:
        """End a streaming answer: append the last `text`, keep the reason and the stats. Pass
        cut_short=True when it did not end by itself (stop button, client gone, shutdown, error)."""
        now = self._clock()
        with self._db.write() as connection:
            updated = connection.execute(
                "UPDATE messages SET content = content || ?, written_at = ?, state = ?, finish_reason = ?, "
                "prompt_tokens = ?, completion_tokens = ?, time_to_first_token_s = ?, tokens_per_s = ? "
                "WHERE id = ? AND state = ? "
                "AND EXISTS (SELECT 1 FROM conversations c WHERE c.id = conversation_id AND c.user = ?)",
                (text, now, CUT_SHORT if cut_short else COMPLETE, finish_reason, stats.prompt_tokens,
                 stats.completion_tokens, stats.time_to_first_token_s, stats.tokens_per_s,
                 message_id, STREAMING, user)).rowcount
            if not updated:
                _refuse_answer_write(connection, user, message_id)
            row = connection.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            connection.execute("UPDATE conversations SET updated_at = ? WHERE id = ?",
                               (now, row["conversation_id"]))
            return self._message(row, _siblings(connection, row))

    def recover(self) -> int:
        """Mark every answer still streaming, of every user, as cut short; return how many.
        The server calls this once at start, before it records answers: then no answer can be
        streaming, and any that says so was being written when a process died. Not done on
        every open, since another process (a CLI opened on the file) may be recording."""
        with self._db.write() as connection:
            return connection.execute("UPDATE messages SET state = ? WHERE state = ?",
                                      (CUT_SHORT, STREAMING)).rowcount

    # Search

    def search(self, user: str, query: str, *, limit: int = 20, offset: int = 0) -> Page[SearchHit]:
        """The user's conversations with a title or message holding every word of `query` (white
        space separates words), most recently updated first, each with a snippet of the latest
        matching message. Inactive branches are searched too: switch_branch(hit.message_id)."""
        _check_page(limit, offset)
        terms = query_terms(query)
        if not terms:
            return Page(items=(), total=0, limit=limit, offset=offset)
        with self._db.read() as connection:
            matches = matching_conversations(connection, user, terms)
            hits = []
            for conversation_seq, message_seq in matches[offset:offset + limit]:
                conversation = connection.execute("SELECT * FROM conversations WHERE seq = ?",
                                                  (conversation_seq,)).fetchone()
                message = None if message_seq is None else connection.execute(
                    "SELECT id, content FROM messages WHERE seq = ?", (message_seq,)).fetchone()
                hits.append(SearchHit(
                    conversation=_summary(conversation),
                    message_id=message["id"] if message else None,
                    snippet=snippet(message["content"] if message else conversation["title"], terms)))
        return Page(items=tuple(hits), total=len(matches), limit=limit, offset=offset)

    # Export and import

    def conversation_tree(self, user: str, conversation_id: str) -> ConversationTree:
        """The whole conversation, every branch."""
        with self._db.read() as connection:
            return self._tree(connection, _owned_conversation(connection, user, conversation_id))

    def export_json(self, user: str, conversation_id: str) -> dict[str, Any]:
        """One conversation, every branch, in jisu's format ("format": "jisu.conversation")."""
        return formats.conversation_document(self.conversation_tree(user, conversation_id))

    def export_markdown(self, user: str, conversation_id: str) -> str:
        """One conversation's active branch, to read."""
        return formats.conversation_markdown(self.get_conversation(user, conversation_id))

    def export_all_json(self, user: str) -> dict[str, Any]:
        """All of the user's conversations, newest first, in one document ("jisu.conversations")."""
        with self._db.read() as connection:
            rows = connection.execute("SELECT * FROM conversations WHERE user = ? "
                                      "ORDER BY updated_at DESC, seq DESC", (user,)).fetchall()
            trees = [self._tree(connection, row) for row in rows]
        return formats.conversations_document(trees, exported_at=self._clock())

    def import_file(self, user: str, data: bytes | str | dict[str, Any] | list[Any]) -> ImportResult:
        """Import jisu's JSON (one conversation or all) or ChatGPT's conversations.json. All or
        nothing: a bad file raises HistoryImportError and adds nothing."""
        return self.import_conversations(user, formats.read_import(data))

    def import_conversations(self, user: str, conversations: Sequence[ImportedConversation]) -> ImportResult:
        """Add the conversations, with new ids, in one transaction. A conversation whose source
        key the user already has (imported before, or exported from here) is skipped, not merged."""
        imported: list[str] = []
        skipped = 0
        with self._db.write() as connection:
            for conversation in conversations:
                if connection.execute("SELECT 1 FROM conversations WHERE user = ? AND source_key = ?",
                                      (user, conversation.source_key)).fetchone():
                    skipped += 1
                    continue
                imported.append(_insert_imported(connection, user, conversation))
        return ImportResult(imported=tuple(imported), skipped=skipped)

    # Helpers that need the clock

    def _insert_leaf(self, user: str, conversation_id: str, parent_id: str | None, role: str, content: str,
                     state: str, answer_fields: dict[str, str | None]) -> Message:
        message_id = new_message_id()
        now = self._clock()
        with self._db.write() as connection:
            _owned_conversation(connection, user, conversation_id)
            if parent_id is not None and not connection.execute(
                    "SELECT 1 FROM messages WHERE id = ? AND conversation_id = ?",
                    (parent_id, conversation_id)).fetchone():
                raise MessageNotFound(parent_id)
            columns = ("id", "conversation_id", "parent_id", "role", "content", "state", "created_at",
                       "written_at", *answer_fields)
            connection.execute(
                f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                (message_id, conversation_id, parent_id, role, content, state, now, now, *answer_fields.values()))
            connection.execute("UPDATE conversations SET active_leaf_id = ?, updated_at = ? WHERE id = ?",
                               (message_id, now, conversation_id))
            row = connection.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            return self._message(row, _siblings(connection, row))

    def _message(self, row: sqlite3.Row, siblings: Siblings) -> Message:
        state = row["state"]
        if state == STREAMING and self._clock() - row["written_at"] > STREAMING_STALE_S:
            state = CUT_SHORT
        return Message(
            id=row["id"], conversation_id=row["conversation_id"], parent_id=row["parent_id"], role=row["role"],
            content=row["content"], created_at=row["created_at"], state=state, siblings=siblings,
            model=row["model"], quantization=row["quantization"], finish_reason=row["finish_reason"],
            prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
            time_to_first_token_s=row["time_to_first_token_s"], tokens_per_s=row["tokens_per_s"])

    def _conversation(self, connection: sqlite3.Connection, row: sqlite3.Row) -> Conversation:
        tree, rows = _messages_of(connection, row["id"])
        branch = tuple(self._message(rows[i], tree.siblings(i)) for i in tree.branch_to(row["active_leaf_id"]))
        return Conversation(**vars(_summary(row)), messages=branch)

    def _tree(self, connection: sqlite3.Connection, row: sqlite3.Row) -> ConversationTree:
        tree, rows = _messages_of(connection, row["id"])
        messages = tuple(self._message(message, tree.siblings(i)) for i, message in rows.items())
        return ConversationTree(conversation=_summary(row), source_key=row["source_key"], messages=messages)


def _check_title(title: object) -> None:
    if not isinstance(title, str):
        raise ValueError(f"a title is a string (empty for none), not {type(title).__name__}")


def _check_page(limit: int, offset: int) -> None:
    if limit < 1 or offset < 0:
        raise ValueError(f"a page needs limit >= 1 and offset >= 0 (got limit {limit}, offset {offset})")


def _owned_conversation(connection: sqlite3.Connection, user: str, conversation_id: str) -> sqlite3.Row:
    row = connection.execute("SELECT * FROM conversations WHERE id = ? AND user = ?",
                             (conversation_id, user)).fetchone()
    if row is None:
        raise ConversationNotFound(conversation_id)
    return row


def _messages_of(connection: sqlite3.Connection, conversation_id: str) -> tuple[Tree, dict[str, sqlite3.Row]]:
    """The conversation's tree and its messages by id, in the order written."""
    rows = connection.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq",
                              (conversation_id,)).fetchall()
    return Tree((row["id"], row["parent_id"]) for row in rows), {row["id"]: row for row in rows}


def _siblings(connection: sqlite3.Connection, row: sqlite3.Row) -> Siblings:
    # By conversation: SQLite would pick the parent_id index, where a first message's siblings
    # (parent NULL) are found among the first messages of every conversation in the file.
    ids = tuple(sibling[0] for sibling in connection.execute(
        "SELECT id FROM messages INDEXED BY messages_by_conversation WHERE conversation_id = ? AND parent_id IS ? "
        "ORDER BY seq",
        (row["conversation_id"], row["parent_id"])))
    return Siblings(ids=ids, index=ids.index(row["id"]))


def _summary(row: sqlite3.Row) -> ConversationSummary:
    return ConversationSummary(id=row["id"], title=row["title"], system=row["system"],
                               created_at=row["created_at"], updated_at=row["updated_at"],
                               active_leaf_id=row["active_leaf_id"])


def _refuse_answer_write(connection: sqlite3.Connection, user: str, message_id: str) -> None:
    """Why an answer could not be written to: it is not the user's (or not there), or it ended."""
    row = connection.execute(
        "SELECT m.state FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.id = ? AND c.user = ?", (message_id, user)).fetchone()
    if row is None:
        raise MessageNotFound(message_id)
    raise AnswerNotStreaming(message_id, row["state"])


def _insert_conversation(connection: sqlite3.Connection, conversation_id: str, user: str, title: str,
                         system: str | None, created_at: float, updated_at: float, source_key: str) -> None:
    """A conversation's row, without messages: made here or imported."""
    connection.execute(
        "INSERT INTO conversations (id, user, title, system, created_at, updated_at, source_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (conversation_id, user, title, system, created_at, updated_at, source_key))


def _insert_imported(connection: sqlite3.Connection, user: str, conversation: ImportedConversation) -> str:
    conversation_id = new_conversation_id()
    _insert_conversation(connection, conversation_id, user, conversation.title, conversation.system,
                         conversation.created_at, conversation.updated_at, conversation.source_key)
    new_ids: dict[str, str] = {}
    for message in conversation.messages:
        new_ids[message.id] = new_message_id()
        stats = message.stats
        connection.execute(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, state, created_at, written_at, "
            "model, quantization, finish_reason, prompt_tokens, completion_tokens, time_to_first_token_s, "
            "tokens_per_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new_ids[message.id], conversation_id, new_ids.get(message.parent_id), message.role, message.content,
             # No one is writing an answer that was streaming when it was exported.
             CUT_SHORT if message.state == STREAMING else message.state, message.created_at, message.created_at,
             message.model, message.quantization, message.finish_reason, stats.prompt_tokens,
             stats.completion_tokens, stats.time_to_first_token_s, stats.tokens_per_s))
    connection.execute("UPDATE conversations SET active_leaf_id = ? WHERE id = ?",
                       (new_ids.get(conversation.active_leaf_id), conversation_id))
    return conversation_id
