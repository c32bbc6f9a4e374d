"""The SQLite file: created private, opened with the settings every connection needs, shared by
threads through a small pool of connections.

WAL mode lets readers go on while one writer commits, and other processes (a second server, a
CLI opened on the file) wait for the write lock up to `busy_timeout_s` instead of failing.
Every write is a short `BEGIN IMMEDIATE` transaction: taking the write lock at the start means
a transaction never fails halfway because another one wrote first.

synchronous=NORMAL: in WAL mode a commit is then written to the OS but not fsynced. A killed
process (kill -9, a crash) loses nothing committed; a power cut may lose the last commits but
never corrupts the file. Answers are committed several times a second while they stream, and an
fsync each time would cost more than generating the tokens.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jisu.history.errors import SchemaError, StoreClosed

DEFAULT_BUSY_TIMEOUT_S = 10.0


def create_private_file(path: Path) -> None:
    """Make the database file readable by its owner only before SQLite first opens it (SQLite
    gives its -wal and -shm files the same mode). An existing file is left as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(descriptor)


@contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` ... `COMMIT` on `connection`, rolled back when the block raises."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.rollback()
        raise
    connection.execute("COMMIT")


class Database:
    """One database file and the connections to it. Each thread borrows a connection for one
    read or write and gives it back, so no connection is ever used by two threads at once."""

    def __init__(self, path: Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._idle: list[sqlite3.Connection] = []
        self._everyone: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        create_private_file(path)
        try:
            with self.connection() as connection:
                self._use_wal(connection)
        except sqlite3.DatabaseError as error:
            self.close()
            raise SchemaError(f"{path}: not a jisu history database ({error})") from None

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        """Persistent in the file; a no-op once set. Needs no transaction around it. Several
        processes opening a new file at once race to switch it, and SQLite answers the losers
        "database is locked" at once, without waiting out the busy timeout: so wait here."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun and ended here, explicitly, not by the
        # sqlite3 module's guesses. check_same_thread=False: the pool hands a connection to one
        # thread at a time, but not always the same thread.
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                     check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")  # per connection: deletes cascade
        connection.execute("PRAGMA synchronous = NORMAL")  # per connection: see the module's note
        return connection

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of this thread's own until the block ends, outside any transaction."""
        with self._lock:
            if self._closed:
                raise StoreClosed(f"{self.path}: the conversation store is closed")
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._connect()
            with self._lock:
                self._everyone.append(connection)
        try:
            yield connection
        finally:
            if connection.in_transaction:  # an error escaped mid-transaction: never hand it on
                connection.rollback()
            with self._lock:
                keep = not self._closed
                if keep:
                    self._idle.append(connection)
            if not keep:  # the store was closed while this thread used it
                connection.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back when it raises."""
        with self.connection() as connection, write_transaction(connection):
            yield connection

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query in the block sees the same committed state."""
        with self.connection() as connection:
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.rollback()  # nothing to keep; ends the snapshot

    def close(self) -> None:
        """Close every connection. Call when no thread uses the store any more."""
        with self._lock:
            self._closed = True
            connections, self._everyone, self._idle = self._everyone, [], []
        for connection in connections:
            connection.close()
