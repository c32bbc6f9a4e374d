"""The history database's schema: built by named steps, recorded, never recreated.

A database left by any jisu must open, keep its conversations and end up with exactly the
schema of a new file. Each released schema version is a fixture: a SQL script written from that
version's steps (frozen: not made by today's code), with a little data. Adding a schema step
means adding the script of the version it makes to EARLIER_VERSIONS, next to the others.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jisu.history import ConversationNotFound, ConversationStore, SchemaError
from jisu.history.migrations import MIGRATIONS, Migration, applied_migrations, migrate

DATA = Path(__file__).parent / "data"
# name -> the script that builds a database as that version left it
EARLIER_VERSIONS = {
    "empty file": None,
    "version 1": DATA / "history_schema_v1.sql",
}


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    """Every table, index, view and trigger with its SQL, whitespace normalised."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        return [(kind, name, " ".join(sql.split())) for kind, name, sql in rows]


def build(tmp_path: Path, version: str) -> Path:
    script = EARLIER_VERSIONS[version]
    path = tmp_path / "history.db"
    if script is not None:
        with sqlite3.connect(path) as connection:
            connection.executescript(script.read_text(encoding="utf-8"))
    return path


def test_a_new_file_gets_every_step_in_order(tmp_path):
    with ConversationStore(tmp_path / "history.db") as store:
        store.create_conversation("local")
    with sqlite3.connect(tmp_path / "history.db") as connection:
        assert applied_migrations(connection) == [migration.name for migration in MIGRATIONS]


@pytest.mark.parametrize("version", list(EARLIER_VERSIONS))
def test_every_earlier_version_is_brought_up_to_date(tmp_path, version):
    path = build(tmp_path, version)
    ConversationStore(path).close()
    fresh = tmp_path / "fresh" / "history.db"
    ConversationStore(fresh).close()
    assert schema_of(path) == schema_of(fresh), "a migrated database must have exactly a new one's schema"
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert applied_migrations(connection) == [migration.name for migration in MIGRATIONS]


@pytest.mark.parametrize("version", [name for name, script in EARLIER_VERSIONS.items() if script])
def test_conversations_survive_the_migration(tmp_path, version):
    """Each fixture holds user alice's conversation 'Trip to Beijing': a question about 北京's
    故宫, answered twice (the second answer active), and bob's conversation."""
    with ConversationStore(build(tmp_path, version)) as store:
        page = store.list_conversations("alice")
        assert [summary.title for summary in page.items] == ["Trip to Beijing"]
        conversation = store.get_conversation("alice", page.items[0].id)
        assert [message.role for message in conversation.messages] == ["user", "assistant"]
        assert conversation.messages[1].siblings.count == 2
        assert conversation.messages[1].siblings.index == 1
        assert store.search("alice", "故宫").total == 1
        assert store.search("alice", "北京").total == 1
        assert store.search("bob", "故宫").total == 0
        with pytest.raises(ConversationNotFound):
            store.get_conversation("bob", conversation.id)


def test_reopening_applies_nothing(tmp_path):
    path = tmp_path / "history.db"
    ConversationStore(path).close()
    before = schema_of(path)
    with sqlite3.connect(path) as connection:
        assert migrate(connection, now=0.0) == []
    ConversationStore(path).close()
    assert schema_of(path) == before


def test_a_database_from_a_newer_jisu_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "history.db"
    ConversationStore(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO schema_migrations (name, applied_at) VALUES ('9999_from_the_future', 0)")
    before = path.read_bytes()
    with pytest.raises(SchemaError, match="newer jisu"):
        ConversationStore(path)
    assert path.read_bytes() == before


def test_a_failed_step_leaves_no_trace(tmp_path):
    def half_done(connection):
        connection.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("step failed")

    path = tmp_path / "history.db"
    ConversationStore(path).close()
    steps = (*MIGRATIONS, Migration("0002_half_done", half_done))
    with sqlite3.connect(path, isolation_level=None) as connection:
        with pytest.raises(RuntimeError):
            migrate(connection, now=0.0, migrations=steps)
        assert applied_migrations(connection) == [migration.name for migration in MIGRATIONS]
        assert not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_done'").fetchone()


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(SchemaError, match="not a jisu history database"):
        ConversationStore(path)
