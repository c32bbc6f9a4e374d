"""Plain data shared by every layer: messages, sampling parameters, request events.

Standard library only, so the engine, the scheduler, the server and the CLI can all
import it without pulling each other in.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

ROLES = ("system", "user", "assistant", "tool")

# Limits that keep one request from hurting everyone else on a shared instance.
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256
MAX_SEED = 2**32 - 2  # 2**32 - 1 is llama.cpp's "pick a random seed" sentinel
MAX_LOGIT_BIAS = 1024  # tokens one request may bias (OpenAI allows 300)
MAX_TOP_LOGPROBS = 20  # alternatives reported per token (OpenAI's limit)


class ModelError(Exception):
    """A model cannot be found, fetched or loaded; the message names the file and the problem."""


class InvalidRequest(ValueError):
    """A request the user can fix; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class ContextOverflow(InvalidRequest):
    """The prompt (plus the tokens asked for) does not fit in the context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int | None, context_size: int):
        asked = f" + {max_tokens} requested completion tokens" if max_tokens else ""
        super().__init__(
            f"This model's context is {context_size} tokens, but the prompt has "
            f"{prompt_tokens} tokens{asked}. Shorten the conversation or start a new one.",
            param="messages",
            code="context_length_exceeded",
        )
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_size = context_size


class QueueFull(Exception):
    """More requests are waiting than --max-queue allows."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"server busy: {waiting} requests already waiting")
        self.waiting = waiting


class SchedulerClosed(Exception):
    """The engine takes no more requests: it is shutting down."""


@dataclass
class ChatMessage:
    role: str
    content: str = ""
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidRequest(
                f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}", "role"
            )


class FinishReason(str, enum.Enum):
    STOP = "stop"  # end-of-turn token or a stop string
    LENGTH = "length"  # max_tokens or the context window
    CANCELLED = "cancelled"  # client gone or stop button
    SHUTDOWN = "shutdown"  # the server stopped before the answer ended


@dataclass
class SamplingParams:
    """How to pick each next token. Defaults follow Qwen2.5's own generation_config."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    repetition_penalty: float = 1.05
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None  # GBNF; set by structured-output requests
    grammar_trigger: str | None = None  # lazy grammar: it applies once the text matches this regex
    ignore_eos: bool = False  # keep going past end-of-turn (benchmarks want fixed lengths)
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit
    logprobs: bool = False  # report each token's logprob (TokenLogprob); off, it costs nothing
    top_logprobs: int = 0  # and this many of the likeliest tokens at each place

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name, limit in SAMPLING_LIMITS.items():
            value = getattr(self, name)
            if value is not None or name not in OPTIONAL_SAMPLING_FIELDS:
                limit.check(name, value)
        if len(self.logit_bias) > MAX_LOGIT_BIAS:
            raise InvalidRequest(f"logit_bias: at most {MAX_LOGIT_BIAS} tokens", "logit_bias")
        bias = LOGIT_BIAS_LIMIT
        for token, value in self.logit_bias.items():
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise InvalidRequest(f"logit_bias: {token!r} is not a token id", "logit_bias")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not bias.low <= value <= bias.high:
                raise InvalidRequest(f"logit_bias: the bias of token {token} must be in "
                                     f"[{bias.low}, {bias.high}]", "logit_bias")
        if isinstance(self.top_logprobs, bool) or not isinstance(self.top_logprobs, int) \
                or not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidRequest(f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}]", "top_logprobs")
        if len(self.stop) > MAX_STOP_STRINGS:
            raise InvalidRequest(f"stop: at most {MAX_STOP_STRINGS} stop strings", "stop")
        for s in self.stop:
            if not isinstance(s, str) or not s or len(s) > MAX_STOP_LENGTH:
                raise InvalidRequest(
                    f"stop: each stop string must be 1..{MAX_STOP_LENGTH} characters", "stop"
                )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Limit:
    """The allowed range of one sampling parameter. The API's request schema is built from
    the same table (jisu.server.protocol), so both refuse exactly the same values."""

    low: float
    high: float
    low_open: bool = False  # the low end itself is not allowed
    integer: bool = False

    def check(self, name: str, value: object) -> None:
        if self.integer:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidRequest(f"{name} must be an integer, got {value!r}", name)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRequest(f"{name} must be a number, got {value!r}", name)
        too_low = value <= self.low if self.low_open else value < self.low
        if too_low or value > self.high:
            bracket = "(" if self.low_open else "["
            raise InvalidRequest(f"{name} must be in {bracket}{self.low}, {self.high}], got {value}", name)


SAMPLING_LIMITS = {
    "temperature": Limit(0.0, 2.0),
    "top_p": Limit(0.0, 1.0, low_open=True),
    "top_k": Limit(0, 1_000_000, integer=True),
    "min_p": Limit(0.0, 1.0),
    "repetition_penalty": Limit(0.0, 2.0, low_open=True),
    "presence_penalty": Limit(-2.0, 2.0),
    "frequency_penalty": Limit(-2.0, 2.0),
    "penalty_last_n": Limit(0, 1_000_000, integer=True),
    "seed": Limit(0, MAX_SEED, integer=True),
    "max_tokens": Limit(1, 1_000_000, integer=True),
}
OPTIONAL_SAMPLING_FIELDS = ("seed", "max_tokens")  # None: random seed, no limit but the context
LOGIT_BIAS_LIMIT = Limit(-100, 100)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Timings:
    """Seconds measured by the scheduler, so every front end reports the same numbers."""

    queued_s: float = 0.0
    time_to_first_token_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    completion_tokens: int = 0

    @property
    def decode_tokens_per_s(self) -> float:
        # The first token comes out of prefill; the decode rate counts the ones after it.
        steps = self.completion_tokens - 1
        return steps / self.decode_s if steps > 0 and self.decode_s > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "queued_ms": round(self.queued_s * 1000, 1),
            "time_to_first_token_ms": round(self.time_to_first_token_s * 1000, 1),
            "prefill_ms": round(self.prefill_s * 1000, 1),
            "decode_ms": round(self.decode_s * 1000, 1),
            "completion_tokens": self.completion_tokens,
            "tokens_per_second": round(self.decode_tokens_per_s, 2),
        }


# ---- events a request's consumer receives, in order -------------------------------


@dataclass
class Queued:
    position: int  # requests ahead of this one


@dataclass
class PrefillProgress:
    processed: int
    total: int


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token as the model scored it (asked for with SamplingParams.logprobs).

    Log-probabilities are the model's own: a log-softmax over the whole vocabulary of the raw
    logits, before logit_bias, penalties, temperature, truncation or a grammar (see
    jisu.engine.logprobs)."""

    piece: bytes  # the token's bytes (part of a character, for some tokens)
    logprob: float
    top: list[tuple[bytes, float]]  # the likeliest tokens at this place, best first
    text_offset: int  # where the token's text starts in the answer, in characters


@dataclass
class TextDelta:
    text: str
    token_ids: list[int]
    # With SamplingParams.logprobs: the tokens whose text starts in this delta (None: not asked).
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Finished:
    reason: FinishReason
    usage: Usage
    timings: Timings


@dataclass
class Failed:
    message: str
    code: str = "internal_error"


Event = Queued | PrefillProgress | TextDelta | Finished | Failed


class EventReader(Generic[T]):
    """One wire format's translation of events (SSE chunks, WebSocket messages, terminal
    text...): a method per kind of event, and `read` to dispatch. Every format handles
    every kind, and a new kind is added in one place."""

    def read(self, event: Event) -> T:
        return getattr(self, _READERS[type(event)])(event)

    def queued(self, event: Queued) -> T:
        raise NotImplementedError

    def progress(self, event: PrefillProgress) -> T:
        raise NotImplementedError

    def text(self, event: TextDelta) -> T:
        raise NotImplementedError

    def finished(self, event: Finished) -> T:
        raise NotImplementedError

    def failed(self, event: Failed) -> T:
        raise NotImplementedError


_READERS = {Queued: "queued", PrefillProgress: "progress", TextDelta: "text", Finished: "finished",
            Failed: "failed"}
