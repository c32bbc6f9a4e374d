"""The database schema, built by named steps applied in order and recorded in the database.

A step, once released, never changes: a database made by an older jisu is brought up to date by
running the steps it has not seen, each in its own transaction with its record (a failed step
leaves the database as it was). A database that has seen a step this code does not know was
written by a newer jisu and is refused, never recreated.

To change the schema, append a step to MIGRATIONS and add the database it starts from as a
fixture in tests/unit/test_history_migrations.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from jisu.history.db import write_transaction
from jisu.history.errors import SchemaError


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _conversations_messages_and_search(connection: sqlite3.Connection) -> None:
    for statement in _VERSION_1:
        connection.execute(statement)


# Each table gets `seq INTEGER PRIMARY KEY`: a rowid that VACUUM never renumbers, which the
# search index refers to rows by (a table's hidden rowid may change), and the order rows were
# written in (siblings, "the branch written last").
_VERSION_1 = (
    """CREATE TABLE conversations (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        user TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT '',
        system TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        active_leaf_id TEXT,
        source_key TEXT NOT NULL
    )""",
    "CREATE INDEX conversations_by_user ON conversations (user, updated_at DESC, seq DESC)",
    # Where a conversation was first made ("jisu:<its id>" when here, "chatgpt:<id>"...): an
    # import finds by it what is already here, so importing one file twice adds nothing.
    "CREATE UNIQUE INDEX conversations_by_source ON conversations (user, source_key)",
    """CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        parent_id TEXT REFERENCES messages (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
        content TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('streaming', 'complete', 'cut_short')),
        created_at REAL NOT NULL,
        written_at REAL NOT NULL,
        model TEXT,
        quantization TEXT,
        finish_reason TEXT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        time_to_first_token_s REAL,
        tokens_per_s REAL
    )""",
    "CREATE INDEX messages_by_conversation ON messages (conversation_id, seq)",
    # Deleting a message checks for children by parent_id: without this, a scan per message.
    "CREATE INDEX messages_by_parent ON messages (parent_id)",
    "CREATE INDEX messages_streaming ON messages (state) WHERE state = 'streaming'",
    # Search: trigram FTS5 indexes, which find any run of 3+ characters, so a Chinese word is found
    # in the middle of a sentence (the default tokenizer takes a whole CJK sentence as one word).
    # Both read their text from the tables (external content) rather than keep a second copy.
    # Answers are indexed once they stop streaming: re-indexing an answer at every append while
    # it streams would cost more than the append. The view is what the index holds exactly, so
    # FTS5's own integrity-check and 'rebuild' agree with the triggers.
    "CREATE VIEW indexed_messages AS SELECT seq, content FROM messages WHERE state != 'streaming'",
    """CREATE VIRTUAL TABLE messages_fts USING fts5 (
        content, content = 'indexed_messages', content_rowid = 'seq', tokenize = 'trigram')""",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.state != 'streaming'
    BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.state != 'streaming'
    BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
    END""",
    # One trigger, so the old text leaves the index before the new one enters it.
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, state ON messages
    BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            SELECT 'delete', old.seq, old.content WHERE old.state != 'streaming';
        INSERT INTO messages_fts (rowid, content)
            SELECT new.seq, new.content WHERE new.state != 'streaming';
    END""",
    """CREATE VIRTUAL TABLE conversations_fts USING fts5 (
        title, content = 'conversations', content_rowid = 'seq', tokenize = 'trigram')""",
    """CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations
    BEGIN
        INSERT INTO conversations_fts (rowid, title) VALUES (new.seq, new.title);
    END""",
    """CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations
    BEGIN
        INSERT INTO conversations_fts (conversations_fts, rowid, title) VALUES ('delete', old.seq, old.title);
    END""",
    """CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations
    BEGIN
        INSERT INTO conversations_fts (conversations_fts, rowid, title) VALUES ('delete', old.seq, old.title);
        INSERT INTO conversations_fts (rowid, title) VALUES (new.seq, new.title);
    END""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_conversations_messages_search", _conversations_messages_and_search),
)

_CREATE_RECORD_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    name TEXT PRIMARY KEY,
    applied_at REAL NOT NULL
)"""


def applied_migrations(connection: sqlite3.Connection) -> list[str]:
    """The steps this database has seen, in the order they were applied."""
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
    if not exists:
        return []
    return [row[0] for row in connection.execute("SELECT name FROM schema_migrations ORDER BY rowid")]


def check_known(applied: list[str], migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    """Refuse a database whose history is not a beginning of ours: it was written by a newer
    jisu (or another program), and writing to it could destroy what that version keeps."""
    known = [migration.name for migration in migrations]
    if applied != known[:len(applied)]:
        unknown = next((name for name in applied if name not in known), None)
        if unknown is not None:
            raise SchemaError(f"the history database was written by a newer jisu (schema step {unknown!r} "
                              f"is unknown here); upgrade jisu to open it")
        raise SchemaError(f"the history database's schema steps {applied} do not match this jisu's {known}")


def migrate(connection: sqlite3.Connection, now: float,
            migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Apply the steps this database has not seen; return their names. Safe when several
    processes open a new file at once: each step's transaction checks again under the write lock."""
    applied = applied_migrations(connection)
    check_known(applied, migrations)
    if len(applied) == len(migrations):
        return []  # up to date: opening takes no write lock
    done: list[str] = []
    for migration in migrations:
        with write_transaction(connection):
            connection.execute(_CREATE_RECORD_TABLE)
            applied = applied_migrations(connection)
            check_known(applied, migrations)
            if migration.name not in applied:
                migration.apply(connection)
                connection.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                                   (migration.name, now))
                done.append(migration.name)
    return done
