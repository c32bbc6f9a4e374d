"""What the scheduler may ask of an engine: the seam between scheduling and llama.cpp.

The engine speaks token ids only. `LlamaEngine` implements it over libllama; the unit
tests' fake engine implements it over plain lists, and one contract test suite
(tests/contract) runs against both, so the fake cannot drift from the real thing.
Standard library only: importing this never loads llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from jisu.engine.template import Segment
from jisu.types import SamplingParams


class EngineError(RuntimeError):
    """The engine refused a batch; the message says which way."""


class StepInterrupted(Exception):
    """decode() stopped early because interrupt() was called. The batch left nothing in the
    KV cache: the same slices can simply be decoded again."""


@dataclass(frozen=True)
class BatchSlice:
    """Consecutive tokens of one sequence, placed at positions start_pos, start_pos+1, ..."""

    seq_id: int
    tokens: Sequence[int]
    start_pos: int
    want_logits: bool  # logits for the slice's last token (to sample the next one)


@dataclass(frozen=True)
class ScoredToken:
    """A sampled token with the model's log-probabilities (see jisu.engine.logprobs)."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # (token, logprob) of the likeliest tokens, best first


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> token ids. Any thread may call it."""

    n_vocab: int

    def tokenize(self, text: str, special: bool = False, add_special: bool = False) -> list[int]:
        """`special`: control-token markers in the text become control tokens.
        `add_special`: the tokens the model puts around every text (BOS), if it has any."""

    def tokenize_segments(self, segments: Sequence[Segment]) -> list[int]:
        """A rendered chat template, each segment tokenized on its own."""

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token in the vocabulary; control tokens render as nothing,
        or with `special` as their markers."""

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str: ...

    def is_end_of_generation(self, token: int) -> bool: ...


@runtime_checkable
class TokenSampler(Protocol):
    """Picks one sequence's next tokens; the scheduler closes it when the sequence ends."""

    def sample(self, logits_row: int | Any) -> int:
        """The next token, from the logits decode() left at `logits_row`, or from a copy
        made by Engine.copy_logits (which stays as it was)."""

    def sample_with_logprobs(self, logits_row: int | Any, top_n: int) -> ScoredToken:
        """The token sample() would pick from the same logits, with its log-probability and
        the `top_n` likeliest tokens' under the model's own distribution (before any sampling
        setting: see jisu.engine.logprobs)."""

    def close(self) -> None: ...


@runtime_checkable
class Engine(Protocol):
    """A model with `n_sequences` independent KV sequences of up to `ctx_size` tokens.
    Only the scheduler's thread calls it, except interrupt(), check_grammar() and the
    tokenizer, which any thread may call."""

    tokenizer: Tokenizer
    ctx_size: int
    n_sequences: int
    batch_capacity: int  # most tokens one decode() may carry

    def warm_up(self) -> None:
        """Run the model once so the first request does not pay for first use; on the
        thread that will run every decode() after it."""

    def decode(self, slices: Sequence[BatchSlice]) -> list[int | None]:
        """One forward pass over all slices (one per sequence). Returns, per slice, the
        logits row its sampler reads, or None when the slice asked for no logits. Raises
        StepInterrupted (KV unchanged) or EngineError (KV unchanged)."""

    def copy_logits(self, logits_row: int) -> Any:
        """A copy of the logits decode() left at `logits_row`, for a sampler to read later
        (after other steps). It has an `nbytes` size."""

    def interrupt(self) -> None:
        """Make the running decode(), or the next one, raise StepInterrupted."""

    def clear_interrupt(self) -> None: ...

    def new_sampler(self, params: SamplingParams, prompt_tokens: Sequence[int]) -> TokenSampler: ...

    def check_grammar(self, grammar: str, trigger: str | None = None) -> None:
        """Raise InvalidRequest unless the engine can enforce this GBNF grammar."""

    def forget(self, seq_id: int, start: int = 0) -> None:
        """Drop a sequence's KV from position `start` on (all of it by default)."""

    def save_sequence(self, seq_id: int) -> bytes | bytearray:
        """A copy of one sequence's KV in host memory."""

    def restore_sequence(self, seq_id: int, state: bytes | bytearray) -> None:
        """Replace a sequence's KV with a copy from save_sequence(); EngineError if it
        cannot be restored (the sequence is then empty)."""

    def close(self) -> None: ...
