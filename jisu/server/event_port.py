"""Engine events into the event loop: one wakeup per burst, not one per event.

The engine thread emits every running answer's token within microseconds of each other at
the end of a step. `loop.call_soon_threadsafe` per event would wake the loop (a write to its
self-pipe, a callback, a task switch) eight times a step at eight streams; here the first
event of a burst schedules one flush and the rest join it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Callable

from jisu.types import Event


class EventPort:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: deque[tuple[Callable[[Event], None], Event]] = deque()
        self._lock = threading.Lock()
        self._flush_scheduled = False

    def sink(self, deliver: Callable[[Event], None]) -> Callable[[Event], None]:
        """The engine-side callback for one answer: `deliver` runs on the loop."""
        return lambda event: self._post(deliver, event)

    def _post(self, deliver: Callable[[Event], None], event: Event) -> None:
        self._pending.append((deliver, event))
        with self._lock:
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop is closed: nobody is left to read the event
            with self._lock:
                self._flush_scheduled = False
            raise

    def _flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False  # from here on a new event schedules a new flush
        while self._pending:
            deliver, event = self._pending.popleft()
            deliver(event)
