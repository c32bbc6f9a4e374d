"""One generation request as the scheduler sees it: its state, its text, its clock."""

from __future__ import annotations

import enum
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from jisu.types import Event, FinishReason, SamplingParams, Timings, Usage

if TYPE_CHECKING:
    from jisu.engine.protocol import TokenSampler
    from jisu.engine.text_assembler import TextAssembler
    from jisu.scheduler.prefix_cache import PromptEnd
    from jisu.scheduler.slots import Slot

_request_numbers = itertools.count(1)


@dataclass(frozen=True)
class CacheOwner:
    """Whose KV a request leaves behind in its slot, and whose it may start from.

    A prompt is matched only against KV of the same user: reusing another user's would show
    in the reply (usage's cached_tokens, a faster first token) how much of this prompt that
    user had sent. Within a user, KV of the same conversation is preferred, so a turn of a
    known conversation reuses exactly that conversation's state (see SlotTable.acquire).
    """

    user: str = ""  # "": whoever calls in-process (the CLI, tests); the server always names one
    conversation: str | None = None  # the conversation the prompt continues, when one is known

    def may_reuse(self, holder: CacheOwner) -> bool:
        """Whether KV left by `holder` may serve as this request's prefix."""
        return holder.user == self.user

    def continues(self, holder: CacheOwner) -> bool:
        """Whether KV left by `holder` belongs to this request's own conversation."""
        return self.conversation is not None and holder == self


class Phase(enum.Enum):
    WAITING = "waiting"  # in the queue
    PREFILL = "prefill"  # prompt being processed, chunk by chunk
    DECODE = "decode"  # one new token per step
    DONE = "done"


@dataclass(eq=False)
class Request:
    prompt_tokens: list[int]
    sampling: SamplingParams
    sink: Callable[[Event], None]  # called on the engine thread; must not block
    cache_owner: CacheOwner = CacheOwner()
    id: int = field(default_factory=lambda: next(_request_numbers))

    phase: Phase = Phase.WAITING
    slot: Slot | None = None  # the engine sequence it runs in
    n_past: int = 0  # tokens of this sequence already in the KV cache
    cached_tokens: int = 0  # of those, how many came from the prefix cache
    generated: list[int] = field(default_factory=list)
    next_token: int | None = None  # sampled, not yet fed through the model
    prompt_end: PromptEnd | None = None  # the logits its prompt ended with, once known
    sampler: TokenSampler | None = None  # the engine's, for this sequence
    text_assembler: TextAssembler | None = None  # its answer so far, as its client sees it
    queue_position: int | None = None

    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0
    first_token_at: float = 0.0
    cancel_reason: FinishReason = FinishReason.CANCELLED  # what the answer's end will say
    _cancel: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: Event) -> None:
        """Hand an event to the consumer. A consumer that fails (its event loop closed, say)
        loses its request, not the engine thread."""
        try:
            self.sink(event)
        except Exception:
            self._cancel.set()

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Safe from any thread; the scheduler frees the request within one step and its
        Finished event carries `reason` (the client left, or the server is stopping)."""
        if not self._cancel.is_set():
            self.cancel_reason = reason
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def tokens_in_kv(self) -> list[int]:
        return (self.prompt_tokens + self.generated)[: self.n_past]

    @property
    def new_prompt_tokens(self) -> int:
        """Prompt tokens that were not found in the cache when the request started."""
        return len(self.prompt_tokens) - self.cached_tokens

    @property
    def prompt_remaining(self) -> int:
        return len(self.prompt_tokens) - self.n_past

    def usage(self) -> Usage:
        return Usage(len(self.prompt_tokens), len(self.generated), self.cached_tokens)

    def timings(self, now: float) -> Timings:
        first = self.first_token_at or now
        return Timings(
            queued_s=(self.started_at or now) - self.submitted_at,
            time_to_first_token_s=first - self.submitted_at,
            prefill_s=first - (self.started_at or first),
            decode_s=now - first if self.first_token_at else 0.0,
            completion_tokens=len(self.generated),
        )
