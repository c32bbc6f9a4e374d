"""A fake engine implementing jisu.engine.protocol.Engine, for fast tests of scheduling logic.

Tokens are bytes (0-255) plus three control tokens. The fake keeps each sequence's "KV"
as a token list and checks every batch against it, so a scheduler that feeds a token at
the wrong position, reuses a prefix it does not hold, or forgets to free a sequence fails
loudly. Its "model" answers with a scripted text, then an end-of-turn token. The contract
suite (tests/contract) holds it to what the llama.cpp engine does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from jisu.engine.logprobs import scored_token
from jisu.engine.protocol import BatchSlice, EngineError, ScoredToken, StepInterrupted
from jisu.engine.template import Segment
from jisu.runtime import ModelInfo, Runtime
from jisu.scheduler.loop import Scheduler
from jisu.scheduler.turns import ChatTurns
from jisu.types import InvalidRequest, SamplingParams

FAKE_MODEL_SHA256 = "3f2a9c01de" + "0" * 54  # what the fake runtime says its model file hashes to
SPECIALS = {"<|im_start|>": 256, "<|im_end|>": 257, "<|endoftext|>": 258}
END_OF_TURN = 257


class ByteTokenizer:
    n_vocab = 259

    def tokenize(self, text: str, special: bool = False, add_special: bool = False) -> list[int]:
        tokens: list[int] = []  # add_special: like Qwen, this vocabulary adds no BOS
        rest = text
        while rest:
            if special:
                marker = next((m for m in SPECIALS if rest.startswith(m)), None)
                if marker:
                    tokens.append(SPECIALS[marker])
                    rest = rest[len(marker):]
                    continue
            tokens.extend(rest[0].encode())
            rest = rest[1:]
        return tokens

    def tokenize_segments(self, segments: Sequence[Segment]) -> list[int]:
        return [t for s in segments for t in self.tokenize(s.text, s.special)]

    def piece(self, token: int, special: bool = False) -> bytes:
        if token < 256:
            return bytes([token])
        return next(m for m, t in SPECIALS.items() if t == token).encode() if special else b""

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        return b"".join(self.piece(t, special) for t in tokens).decode("utf-8", errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        return token in (257, 258)


@dataclass
class FakeEngine:
    answer: Callable[[str], str] = lambda prompt: "Hello from the fake model!"
    ctx_size: int = 2048
    n_sequences: int = 4
    batch_capacity: int = 64
    step_delay_s: float = 0.0
    decode_step_extra_s: float = 0.0  # added to steps of one token per sequence
    fail_on_step: int | None = None  # raise inside decode on this step number

    tokenizer: ByteTokenizer = field(default_factory=ByteTokenizer)
    kv: dict[int, list[int]] = field(default_factory=dict)
    batches: list[list[BatchSlice]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    restores: int = 0
    logits_copied: int = 0
    grammars_checked: list[str] = field(default_factory=list)
    closed: bool = False
    interrupted_batches: list[list[BatchSlice]] = field(default_factory=list)
    in_decode: threading.Event = field(default_factory=threading.Event)  # set while "computing"
    _interrupt: threading.Event = field(default_factory=threading.Event)

    warmed_up_on: str | None = None  # the name of the thread that called warm_up()

    def warm_up(self) -> None:
        self.warmed_up_on = threading.current_thread().name

    def interrupt(self) -> None:
        self._interrupt.set()

    def clear_interrupt(self) -> None:
        self._interrupt.clear()

    def decode(self, slices: Sequence[BatchSlice]) -> list[int | None]:
        started = time.monotonic()
        self.in_decode.set()
        try:
            while True:  # like llama.cpp: an armed interrupt stops even a step of no length
                if self._interrupt.wait(0.001 if time.monotonic() - started < self._step_time(slices) else 0):
                    self.interrupted_batches.append(list(slices))
                    raise StepInterrupted()  # the batch leaves nothing behind
                if time.monotonic() - started >= self._step_time(slices):  # re-read: tests may shorten it
                    break
        finally:
            self.in_decode.clear()
        with self.lock:
            self.batches.append(list(slices))
            step = len(self.batches)
        if self.fail_on_step == step:
            raise RuntimeError("simulated engine failure")
        # Stricter than llama.cpp, which would take two slices of one sequence: the
        # scheduler never sends them, and a scheduler bug that did should fail loudly.
        assert len({s.seq_id for s in slices}) == len(slices), "one slice per sequence per batch"
        self._check_batch(slices)
        rows, index = [], 0
        for piece in slices:
            self.kv.setdefault(piece.seq_id, []).extend(piece.tokens)
            index += len(piece.tokens)
            rows.append(index - 1 if piece.want_logits and piece.tokens else None)
        return rows

    def copy_logits(self, logits_row: int) -> np.ndarray:
        with self.lock:
            self.logits_copied += 1
        return np.array([logits_row], np.float32)

    def _check_batch(self, slices: Sequence[BatchSlice]) -> None:
        """What llama.cpp refuses, refused the same way: nothing of the batch is kept."""
        if sum(len(s.tokens) for s in slices) > self.batch_capacity:
            raise EngineError(f"batch of more than {self.batch_capacity} tokens")
        for piece in slices:
            held = len(self.kv.get(piece.seq_id, []))
            if not 0 <= piece.seq_id < self.n_sequences:
                raise EngineError(f"sequence {piece.seq_id} does not exist")
            if piece.start_pos != held:
                raise EngineError(f"seq {piece.seq_id}: batch starts at {piece.start_pos} "
                                  f"but the KV holds {held} tokens")

    def _step_time(self, slices: Sequence[BatchSlice]) -> float:
        only_decoding = all(len(piece.tokens) == 1 for piece in slices)
        return self.step_delay_s + (self.decode_step_extra_s if only_decoding else 0.0)

    def new_sampler(self, params: SamplingParams, prompt_tokens: Sequence[int]) -> "ScriptedSampler":
        prompt = self.tokenizer.detokenize(prompt_tokens)
        return ScriptedSampler(list(self.answer(prompt).encode()) + [END_OF_TURN])

    def check_grammar(self, grammar: str, trigger: str | None = None) -> None:
        """A syntax check of GBNF's outline (a root rule, closed strings and brackets), so
        that what llama.cpp cannot parse is refused here too."""
        self.grammars_checked.append(grammar)
        unquoted = re.sub(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]', "", grammar)
        balanced = unquoted.count("(") == unquoted.count(")") and '"' not in unquoted
        if not re.search(r"^root\s*::=", grammar, re.MULTILINE) or not balanced:
            raise InvalidRequest("the output grammar could not be parsed", "response_format")

    def forget(self, seq_id: int, start: int = 0) -> None:
        held = self.kv.get(seq_id, [])
        del held[start:]

    def save_sequence(self, seq_id: int) -> bytes:
        return json.dumps(self.kv.get(seq_id, [])).encode() * 40  # about as bulky as real KV

    def restore_sequence(self, seq_id: int, state: bytes) -> None:
        one_copy = state[: len(state) // 40]
        self.kv[seq_id] = []
        try:
            tokens = json.loads(one_copy)
        except ValueError:
            raise EngineError(f"could not restore the saved KV of sequence {seq_id}") from None
        self.kv[seq_id] = tokens
        self.restores += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class ScriptedSampler:
    script: list[int]
    closed: bool = False

    def sample(self, logits_row: int) -> int:
        assert logits_row is not None, "sampled a slice that asked for no logits"
        return self.script.pop(0) if self.script else END_OF_TURN

    def sample_with_logprobs(self, logits_row: int, top_n: int) -> ScoredToken:
        """The scripted token, scored as if the model had been sure of it: its logit 4, the
        next byte's 2, every other token's 0 (so it is also the likeliest, as under greedy)."""
        token = self.sample(logits_row)
        logits = np.zeros(ByteTokenizer.n_vocab, np.float32)
        logits[(token + 1) % 256] = 2.0
        logits[token] = 4.0
        return scored_token(logits, token, top_n)

    def close(self) -> None:
        self.closed = True


@contextmanager
def fake_scheduler(engine: FakeEngine | None = None, parallel: int | None = None, max_queue: int = 64,
                   host_cache_mb: int = 512, reuse_prefixes: bool = True) -> Iterator[Scheduler]:
    """A scheduler on the fake engine, with the chat template's turn markers (as Runtime
    builds it), closed after use: for tests of the scheduler itself."""
    engine = engine or FakeEngine()
    if parallel is not None:
        engine.n_sequences = parallel
    scheduler = Scheduler(engine, max_queue, host_cache_mb * 10**6, reuse_prefixes,
                          chat_turns=ChatTurns.of_template(engine.tokenizer))
    try:
        yield scheduler
    finally:
        scheduler.close()


def fake_runtime(engine: FakeEngine | None = None, parallel: int | None = None, **options) -> Runtime:
    engine = engine or FakeEngine()
    if parallel is not None:
        engine.n_sequences = parallel
    info = ModelInfo(name="Fake-0.5B", id="fake-model", quantization="q4_0",
                     context_size=engine.ctx_size, path="/dev/null", fallback_note=None,
                     architecture="qwen2", size_label="0.5B", sha256=FAKE_MODEL_SHA256)
    return Runtime(engine, info, **options)


# What the test client calls the server: a loopback name, as a browser on this machine would
# (the server refuses Host names it does not know: DNS rebinding).
LOCAL_URL = "http://127.0.0.1:8080"
LOCAL_WS = "ws://127.0.0.1:8080/v1/ws"
