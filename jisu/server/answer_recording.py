"""Recording a conversation's answer while it streams, from the engine's events.

The per-token path touches no database: each event is looked at on the event loop and its text
appended to a list. One task per answer does every write, in order, in a worker thread (SQLite
blocks): the turn's messages, what has accumulated every 0.25 s, the end with its stats.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from jisu.history import AnswerRecorder, ConversationStore
from jisu.history.recorder import DEFAULT_INTERVAL_S
from jisu.history.store import STREAMING_STALE_S
from jisu.server.history import ServerHistory
from jisu.types import Event, Failed, Finished, TextDelta

log = logging.getLogger(__name__)
# A long wait for the first token (queue, long prompt) must not make the answer read as cut
# short (STREAMING_STALE_S): an empty write says it is still being written.
KEEPALIVE_S = STREAMING_STALE_S / 4
SETTLE_TIMEOUT_S = 5.0  # how long a final event may wait for the answer's record to be written


@dataclass(frozen=True)
class StoredTurn:
    conversation_id: str
    parent_message_id: str  # the user's message answered: the new one, or the one answered again
    message_id: str  # the answer

    def ids(self) -> dict[str, str]:
        """What responses carry, beside OpenAI's fields."""
        return {"conversation_id": self.conversation_id, "message_id": self.message_id,
                "parent_message_id": self.parent_message_id}


class AnswerRecording:
    """Records one answer from its events (Serving.start's observer) with an AnswerRecorder.
    The answer's final event reaches its reader only once the end is written (settled()), so
    a client that reads the conversation after its response finds the turn complete."""

    def __init__(self, history: ServerHistory, user: str, conversation_id: str, model: str,
                 quantization: str, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._history = history
        self._user = user
        self._conversation_id = conversation_id
        self._model = model
        self._quantization = quantization
        self._interval_s = interval_s
        self._pieces: list[str] = []
        self._end: Finished | Failed | None = None
        self._ended = asyncio.Event()
        self._begun: asyncio.Future[StoredTurn] = asyncio.get_running_loop().create_future()
        self._writer: asyncio.Task | None = None

    def see(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self._pieces.append(event.text)
        elif isinstance(event, (Finished, Failed)):
            self._end = event
            self._ended.set()

    async def settled(self) -> None:
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=SETTLE_TIMEOUT_S)

    async def begin(self, parent_id: str | None, question: str | None) -> StoredTurn:
        """Store the user's message (None: the parent is answered again) and the answer, begun."""
        self._writer = asyncio.create_task(self._write(parent_id, question))
        self._history.keep(self._writer)
        return await asyncio.shield(self._begun)  # a reader that leaves does not stop the writer

    async def _write(self, parent_id: str | None, question: str | None) -> None:
        try:
            recorder, stored = await self._history.run(lambda store: self._store_turn(store, parent_id, question))
        except Exception as error:
            self._begun.set_exception(error)
            return
        self._begun.set_result(stored)
        try:
            written_at = time.monotonic()
            while not await self._wait_for_end(self._interval_s):
                if self._pieces or time.monotonic() - written_at >= KEEPALIVE_S:
                    text = self._take_text()
                    await asyncio.to_thread(_append, recorder, text)
                    written_at = time.monotonic()
            await asyncio.to_thread(self._finish, recorder, self._take_text())
        except Exception:  # the answer still reaches its reader; recover() marks it cut short later
            log.exception("could not record the answer %s", stored.message_id)

    def _store_turn(self, store: ConversationStore, parent_id: str | None,
                    question: str | None) -> tuple[AnswerRecorder, StoredTurn]:
        if question is not None:
            parent_id = store.add_message(self._user, self._conversation_id, parent_id=parent_id, role="user",
                                          content=question).id
        # The timing of writes is kept here, on the event loop: the recorder writes when told.
        recorder = AnswerRecorder.begin(store, self._user, self._conversation_id, parent_id=parent_id,
                                        model=self._model, quantization=self._quantization, interval_s=math.inf)
        return recorder, StoredTurn(self._conversation_id, parent_id, recorder.message_id)

    async def _wait_for_end(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ended.wait(), timeout)
        except TimeoutError:
            pass
        return self._ended.is_set()

    def _take_text(self) -> str:
        text = "".join(self._pieces)
        self._pieces = []
        return text

    def _finish(self, recorder: AnswerRecorder, text: str) -> None:
        recorder.add(text)
        recorder.finish_with(self._end)

def _append(recorder: AnswerRecorder, text: str) -> None:
    recorder.add(text)
    recorder.flush()
