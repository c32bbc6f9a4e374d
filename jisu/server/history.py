"""The conversation store as the server holds it: opened when the app starts, used off the event
loop, closed at shutdown once the answers still being recorded are written.

Opening calls recover(): no answer of this process is streaming yet, so any answer that says so
was being written when a server died, and now reads as cut short. A store that cannot be opened
(a file from a newer jisu, a disk that refuses) turns conversations off with a one-line reason;
the rest of the server works without them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Callable, TypeVar

import click

from jisu.history import ConversationStore, HistoryError
from jisu.server.errors import ApiError

T = TypeVar("T")
WRITERS_TIMEOUT_S = 10.0  # at shutdown: how long the last answers' records may take to be written


class ServerHistory:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path  # None: JISU_HOME/history.db
        self._store: ConversationStore | None = None
        self._unavailable = "the server has not opened the conversation store"
        self._writers: set[asyncio.Task] = set()

    def open(self) -> None:
        try:
            store = ConversationStore(self.path)
            cut_short = store.recover()
        except (HistoryError, sqlite3.Error, OSError) as error:
            self._unavailable = str(error)
            click.echo(f"jisu: conversations are off: {error}", err=True)
            return
        self._store = store
        if cut_short:
            click.echo(f"jisu: {cut_short} answer(s) being written when the server last stopped are kept "
                       "as cut short", err=True)

    @property
    def store(self) -> ConversationStore:
        """The open store; a 503 saying why when there is none."""
        if self._store is None:
            raise ApiError(503, f"Conversations are unavailable: {self._unavailable}.", type_="server_error",
                           code="history_unavailable")
        return self._store

    async def run(self, operation: Callable[[ConversationStore], T]) -> T:
        """`operation(store)` in a worker thread: SQLite blocks, and the event loop serves every
        streaming answer's tokens."""
        store = self.store
        return await asyncio.to_thread(operation, store)

    def keep(self, writer: asyncio.Task) -> None:
        """A task recording an answer: close() waits for it."""
        self._writers.add(writer)
        writer.add_done_callback(self._writers.discard)

    async def close(self) -> None:
        if self._writers:
            await asyncio.wait(set(self._writers), timeout=WRITERS_TIMEOUT_S)
        store, self._store = self._store, None
        self._unavailable = "the server is stopping"
        if store is not None:
            await asyncio.to_thread(store.close)
