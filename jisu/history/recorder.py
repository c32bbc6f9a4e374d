"""AnswerRecorder: records one streamed answer without a commit per token.

The server hands it every piece of text as it is generated; it writes what has accumulated at
most every `interval_s`. A commit costs a fraction of a millisecond (no fsync: see db.py), but at
tens of tokens a second across parallel answers that would still be time taken from the model's
threads on a 2-core machine; a few commits a second lose at most that fraction of a second of
text to a crash. add() blocks for the commit when it writes, so an async caller may want to
run it in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from jisu.history.records import AnswerStats, Message
from jisu.history.store import ConversationStore
from jisu.types import Failed, Finished, FinishReason

DEFAULT_INTERVAL_S = 0.25


class AnswerRecorder:
    def __init__(self, store: ConversationStore, user: str, message_id: str, *,
                 interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.user = user
        self.message_id = message_id
        self.interval_s = interval_s
        self._clock = clock
        self._pending: list[str] = []
        self._last_write = clock()

    @classmethod
    def begin(cls, store: ConversationStore, user: str, conversation_id: str, *, parent_id: str | None,
              model: str | None = None, quantization: str | None = None,
              interval_s: float = DEFAULT_INTERVAL_S) -> AnswerRecorder:
        """Start recording a new answer after `parent_id` (store.begin_answer)."""
        message = store.begin_answer(user, conversation_id, parent_id=parent_id, model=model,
                                     quantization=quantization)
        return cls(store, user, message.id, interval_s=interval_s)

    def add(self, text: str) -> None:
        """Take the next piece of the answer; write what has accumulated when it is time."""
        self._pending.append(text)
        if self._clock() - self._last_write >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        """Write what has accumulated now (nothing: only a sign the answer is still being written)."""
        text = "".join(self._pending)
        self._pending.clear()
        self.store.append_answer(self.user, self.message_id, text)
        self._last_write = self._clock()

    def finish(self, finish_reason: str | None, stats: AnswerStats = AnswerStats(), *,
               cut_short: bool = False) -> Message:
        """Write the rest and end the answer in one commit (store.finish_answer)."""
        text = "".join(self._pending)
        self._pending.clear()
        return self.store.finish_answer(self.user, self.message_id, finish_reason=finish_reason, stats=stats,
                                        text=text, cut_short=cut_short)

    def finish_with(self, end: Finished | Failed) -> Message:
        """End the answer as its last event says, the same whoever generated it (the server, or
        `jisu chat` in-process): a failure or a stop (cancelled, shutdown) is cut short."""
        if isinstance(end, Failed):
            return self.finish("error", cut_short=True)
        usage, timings = end.usage, end.timings
        answered = usage.completion_tokens > 0
        stats = AnswerStats(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                            time_to_first_token_s=timings.time_to_first_token_s if answered else None,
                            tokens_per_s=timings.decode_tokens_per_s or None)
        return self.finish(end.reason.value, stats,
                           cut_short=end.reason in (FinishReason.CANCELLED, FinishReason.SHUTDOWN))
