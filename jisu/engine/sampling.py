"""Per-sequence token samplers, built from SamplingParams as llama.cpp sampler chains."""

from __future__ import annotations

import ctypes
import random
from collections import Counter, deque
from typing import Sequence

import llama_cpp.llama_cpp as C
import numpy as np

from jisu.engine.logprobs import scored_token
from jisu.engine.protocol import ScoredToken
from jisu.engine.tokenizer import Tokenizer

from jisu.types import InvalidRequest, SamplingParams


# False runs the chain over every logit and the grammar before it, as llama.cpp's
# llama_sampler_sample would: the reference the fast paths are tested against.
USE_FAST_PATHS = True
# llama.cpp's llama_token_data: token id, logit, probability
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class Sampler:
    """One sequence's sampler: penalties, truncation, temperature and draw as a llama.cpp
    chain, and an optional grammar beside it.

    The samplers are stateful (penalties remember recent tokens, the grammar its parse state,
    the RNG its position), so each sequence owns its own and frees them when done.

    Speed, per token and sequence: llama_sampler_sample copies all 151,936 logits into a
    candidate array and sorts for the top k. Where the result only depends on the top
    candidates, numpy picks them from the logits in place and the chain runs over that
    shortlist; plain greedy decoding is one argmax. Checking a grammar against every token
    of the vocabulary costs as much as a decode step, so, as llama.cpp's own common sampler
    does, the token drawn freely is checked alone, and only when the grammar refuses it is
    the draw repeated over the tokens the grammar allows (README: Structured output).
    """

    def __init__(self, params: SamplingParams, tokenizer: Tokenizer, ctx: C.llama_context_p,
                 prompt_tokens: Sequence[int] = ()) -> None:
        self.seed = params.seed if params.seed is not None else random.getrandbits(31)
        self._ctx = ctx
        self._n_vocab = tokenizer.n_vocab
        self._greedy = params.greedy
        self._argmax_only = False  # plain greedy without grammar: no chain needed at all
        self._penalty_window: PenaltyWindow | None = None  # greedy whose penalties only lower
        self._shortlist = 0  # > 0: run the chain over this many top candidates only
        # ignore_eos (benchmarks' fixed-length answers) never picks an end-of-turn token, as
        # in llama-server: the answer goes on as text rather than as invisible control tokens.
        # A grammar decides itself where its answer ends.
        self._banned = (tokenizer.end_of_generation_tokens if params.ignore_eos and not params.grammar
                        else None)
        # OpenAI's logit_bias: added to the raw logits before anything else sees them, so
        # penalties, truncation, grammar and argmax all work on the biased values.
        self._bias_ids = np.fromiter(params.logit_bias, np.int64) if params.logit_bias else None
        self._bias_values = np.fromiter(params.logit_bias.values(), np.float32) if params.logit_bias else None
        self._grammar = None
        self._chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        try:
            if params.grammar:
                self._grammar = grammar_sampler(tokenizer.vocab, params.grammar, params.grammar_trigger)
            self._build(params, tokenizer.n_vocab, prompt_tokens)
        except BaseException:
            self.close()
            raise

    def _add(self, sampler: C.llama_sampler_p) -> None:
        C.llama_sampler_chain_add(self._chain, sampler)  # the chain now owns it

    def _build(self, params: SamplingParams, n_vocab: int, prompt_tokens: Sequence[int]) -> None:
        penalized = bool((params.repetition_penalty != 1.0 or params.frequency_penalty
                          or params.presence_penalty) and params.penalty_last_n > 0)
        if USE_FAST_PATHS:
            if params.greedy and not penalized and self._grammar is None:
                self._argmax_only = True
                return
            shortlist = _exact_shortlist(params) if penalized else (1 if params.greedy else params.top_k)
            self._shortlist = min(shortlist, n_vocab)
            only_repetition = not params.frequency_penalty and not params.presence_penalty
            if params.greedy and penalized and shortlist and only_repetition and self._grammar is None:
                self._penalty_window = PenaltyWindow(params.penalty_last_n, prompt_tokens,
                                                     params.repetition_penalty)
        if penalized:
            penalties = C.llama_sampler_init_penalties(
                n_vocab, params.penalty_last_n, params.repetition_penalty,
                params.frequency_penalty, params.presence_penalty,
            )
            # Like transformers, the penalty window starts in the prompt: the answer should
            # not parrot the last thing the user wrote either.
            for token in prompt_tokens[-params.penalty_last_n:]:
                C.llama_sampler_accept(penalties, token)
            self._add(penalties)
        if params.greedy:
            self._add(C.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            self._add(C.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            self._add(C.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            self._add(C.llama_sampler_init_min_p(params.min_p, 1))
        self._add(C.llama_sampler_init_temp(params.temperature))
        self._add(C.llama_sampler_init_dist(self.seed))

    def sample(self, logits_row: int | np.ndarray) -> int:
        """Pick the next token from the logits decode() left at `logits_row`, or from a copy
        kept by LlamaEngine.copy_logits (left as it is: it may be sampled from again)."""
        if isinstance(logits_row, np.ndarray):
            logits = logits_row.copy()
        else:
            logits = np.ctypeslib.as_array(C.llama_get_logits_ith(self._ctx, logits_row), shape=(self._n_vocab,))
        if self._bias_ids is not None:
            logits[self._bias_ids] += self._bias_values  # llama.cpp's buffer, ours to edit
        if self._banned is not None:
            logits[self._banned] = -np.inf
        if self._argmax_only:
            return int(logits.argmax())  # the first of equal maxima, as llama.cpp's greedy
        if self._penalty_window is not None:
            token = self._greedy_penalized(logits)
        elif self._grammar is not None:
            token = self._draw_allowed(logits)
            C.llama_sampler_accept(self._grammar, token)
        else:
            token = self._draw(logits, self._candidate_ids(logits))
        C.llama_sampler_accept(self._chain, token)
        if self._penalty_window is not None:
            self._penalty_window.push(token)
        return token

    def sample_with_logprobs(self, logits_row: int | np.ndarray, top_n: int) -> ScoredToken:
        """sample()'s token, scored by the model's raw distribution (jisu.engine.logprobs)."""
        if isinstance(logits_row, np.ndarray):
            raw = logits_row  # a kept copy: sample() edits a copy of its own
        else:
            raw = np.ctypeslib.as_array(C.llama_get_logits_ith(self._ctx, logits_row), shape=(self._n_vocab,))
            if self._bias_ids is not None or self._banned is not None:
                raw = raw.copy()  # sample() edits llama.cpp's buffer itself (0.6 MB, logprobs only)
        return scored_token(raw, self.sample(logits_row), top_n)

    def _greedy_penalized(self, logits: np.ndarray) -> int:
        """Greedy under a repetition penalty (>= 1, so it only lowers the logits of recent
        tokens): when the best token is not a recent one, no penalty can change the choice,
        and one argmax decides (most tokens of an answer); else the penalized recent tokens
        compete with the best of the others (PenaltyWindow.best_after_penalty)."""
        best = int(logits.argmax())
        if not self._penalty_window.contains(best):
            return best
        return self._penalty_window.best_after_penalty(logits)

    def _candidate_ids(self, logits: np.ndarray) -> np.ndarray:
        return _top_candidates(logits, self._shortlist) if self._shortlist else np.arange(len(logits))

    def _draw(self, logits: np.ndarray, ids: np.ndarray) -> int:
        """The chain's choice among the tokens `ids`; its state is only advanced by the
        accept that follows."""
        candidates = _Candidates(ids, logits[ids])  # keeps the memory the array points to
        array = candidates.as_llama()
        C.llama_sampler_apply(self._chain, ctypes.byref(array))
        return int(array.data[array.selected].id)  # samplers may swap the data pointer

    def _draw_allowed(self, logits: np.ndarray) -> int:
        """The chain's choice among the tokens the grammar allows, exactly as if the grammar
        had masked the whole vocabulary first, without paying for that when it can be seen
        not to matter."""
        if USE_FAST_PATHS and self._greedy:
            token = self._draw(logits, self._candidate_ids(logits))
            if self._grammar_allows(np.array([token])).all():
                return token  # the best of all tokens, so also the best allowed one
        elif USE_FAST_PATHS and self._shortlist:
            # If the top candidates hold as many allowed tokens as the shortlist needs, the
            # chain's candidates among allowed tokens are all among them.
            ids = _top_candidates(logits, min(len(logits), max(4 * self._shortlist, 256)))
            allowed = ids[self._grammar_allows(ids)]
            if len(allowed) >= self._shortlist:
                return self._draw(logits, allowed)
        logits = self._grammar_masked(logits)
        token = self._draw(logits, self._candidate_ids(logits))
        if logits[token] == -np.inf:
            raise RuntimeError("the output grammar allows no token here")
        return token

    def _grammar_allows(self, ids: np.ndarray) -> np.ndarray:
        """Which of the tokens `ids` the grammar accepts next (a boolean per token)."""
        candidates = _Candidates(ids, np.zeros(len(ids), np.float32))
        array = candidates.as_llama()
        C.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return candidates.data["logit"] != -np.inf

    def _grammar_masked(self, logits: np.ndarray) -> np.ndarray:
        """A copy of the logits with every token the grammar refuses at -inf."""
        candidates = _Candidates(np.arange(len(logits)), logits)
        array = candidates.as_llama()
        C.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return candidates.data["logit"].copy()  # the grammar edits logits in place, in order

    def close(self) -> None:
        for name in ("_chain", "_grammar"):
            sampler = getattr(self, name, None)
            if sampler:
                C.llama_sampler_free(sampler)
                setattr(self, name, None)

    def __del__(self) -> None:
        self.close()


class PenaltyWindow:
    """The last `size` tokens, as llama.cpp's penalties sampler counts them, and greedy
    decoding under its repetition penalty."""

    def __init__(self, size: int, prompt_tokens: Sequence[int], repetition_penalty: float = 1.0) -> None:
        self._recent: deque[int] = deque(maxlen=size)
        self._counts: Counter[int] = Counter()
        self._penalty = np.float32(repetition_penalty)
        for token in prompt_tokens[-size:]:
            self.push(token)

    def push(self, token: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            dropped = self._recent[0]
            self._counts[dropped] -= 1
            if not self._counts[dropped]:
                del self._counts[dropped]
        self._recent.append(token)
        self._counts[token] += 1

    def contains(self, token: int) -> bool:
        return token in self._counts

    def best_after_penalty(self, logits: np.ndarray) -> int:
        """The token llama.cpp's penalties-then-greedy chain picks over the whole vocabulary:
        each recent token's logit divided by the penalty (multiplied when <= 0), in float32
        as llama.cpp computes it, the highest value winning and the lowest id among equals.
        Two passes over the logits (~0.1 ms) instead of a shortlist of the top candidates
        (~0.3 ms a token, and most tokens of a long answer come here)."""
        recent = np.fromiter(self._counts, np.int64, len(self._counts))
        raw = logits[recent]
        penalized = np.where(raw <= 0, raw * self._penalty, raw / self._penalty)
        logits[recent] = -np.inf  # briefly: the best of the other tokens
        other = int(logits.argmax())
        logits[recent] = raw
        top = penalized.max()
        if logits[other] > top:
            return other
        tied = recent[penalized == top]
        return int(min(tied.min(), other) if logits[other] == top else tied.min())


class _Candidates:
    """Candidates as llama.cpp's llama_token_data_array, backed by numpy memory."""

    def __init__(self, ids: np.ndarray, logits: np.ndarray) -> None:
        self.data = np.zeros(len(ids), _TOKEN_DATA)
        self.data["id"] = ids
        self.data["logit"] = logits

    def as_llama(self) -> C.llama_token_data_array:
        pointer = self.data.ctypes.data_as(C.llama_token_data_p)
        return C.llama_token_data_array(pointer, len(self.data), -1, False)


def _top_candidates(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest logits, in no order. Nearly all of a vocabulary lies far below
    the best token, so one comparison against the maximum leaves a few hundred to select
    from: a third of the time of selecting over all 151,936."""
    best = logits.max()
    for margin in (8.0, 16.0, 32.0):
        near = np.flatnonzero(logits >= best - margin)
        if len(near) >= k:
            return near[np.argpartition(logits[near], -k)[-k:]]
    return np.argpartition(logits, -k)[-k:]


def _exact_shortlist(params: SamplingParams) -> int:
    """How many top candidates to keep before applying penalties without changing the result.

    Penalties scan every candidate, which over Qwen's 151,936-token vocabulary costs about a
    millisecond per token and sequence. Penalties that only lower logits (a repetition penalty
    >= 1, non-negative presence/frequency penalties) touch at most `penalty_last_n` distinct
    tokens, so the final top-k can only come from the top k + penalty_last_n beforehand.
    Returns 0 when no such bound holds (boosting penalties, or no top-k limit).
    """
    lowers_only = (params.repetition_penalty >= 1.0 and params.presence_penalty >= 0
                   and params.frequency_penalty >= 0)
    keep = 1 if params.greedy else params.top_k
    if not lowers_only or keep == 0:
        return 0
    return keep + params.penalty_last_n


def grammar_sampler(vocab: C.llama_vocab_p, grammar: str, trigger: str | None = None) -> C.llama_sampler_p:
    """A grammar sampler; with a trigger (a regular expression, ECMAScript) it stays inactive
    until the text written so far matches it, and applies from its first capture group on."""
    if trigger is None:
        sampler = C.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    else:
        patterns = (ctypes.c_char_p * 1)(trigger.encode())
        sampler = C.llama_sampler_init_grammar_lazy_patterns(
            vocab, grammar.encode(), b"root", patterns, 1, None, 0)
    if not sampler:
        raise InvalidRequest("the output grammar could not be parsed", "response_format")
    return sampler
