"""Per-sequence token samplers, built from SamplingParams as llama.cpp sampler chains."""

from __future__ import annotations

import ctypes
import random
import re
from typing import Sequence

import llama_cpp.llama_cpp as C

from jisu.engine.tokenizer import Tokenizer

from jisu.types import InvalidRequest, SamplingParams


class Sampler:
    """One sequence's sampler chain: penalties, grammar, truncation, temperature, draw.

    The chain is stateful (penalties remember recent tokens, the grammar its parse state,
    the RNG its position), so each sequence owns one and frees it when done.
    """

    def __init__(self, params: SamplingParams, tokenizer: Tokenizer, ctx: C.llama_context_p,
                 prompt_tokens: Sequence[int] = ()) -> None:
        self.seed = params.seed if params.seed is not None else random.getrandbits(31)
        self._ctx = ctx
        self._chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        try:
            self._build(params, tokenizer.vocab, tokenizer.n_vocab, prompt_tokens)
        except BaseException:
            self.close()
            raise

    def _add(self, sampler: C.llama_sampler_p) -> None:
        C.llama_sampler_chain_add(self._chain, sampler)  # the chain now owns it

    def _build(self, params: SamplingParams, vocab: C.llama_vocab_p, n_vocab: int,
               prompt_tokens: Sequence[int]) -> None:
        if params.grammar:
            self._add(grammar_sampler(vocab, params.grammar, params.grammar_trigger))
        penalized = (params.repetition_penalty != 1.0 or params.frequency_penalty
                     or params.presence_penalty) and params.penalty_last_n > 0
        if penalized:
            shortlist = _exact_shortlist(params)
            if shortlist:
                self._add(C.llama_sampler_init_top_k(shortlist))
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

    def sample(self, batch_index: int) -> int:
        """Pick the next token from the logits at `batch_index` of the last decode."""
        return C.llama_sampler_sample(self._chain, self._ctx, batch_index)

    def close(self) -> None:
        if self._chain:
            C.llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:
        self.close()


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
    """A grammar sampler; with a trigger it stays inactive until the trigger text appears."""
    if trigger is None:
        sampler = C.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    else:
        patterns = (ctypes.c_char_p * 1)(re.escape(trigger).encode())
        sampler = C.llama_sampler_init_grammar_lazy_patterns(
            vocab, grammar.encode(), b"root", patterns, 1, None, 0)
    if not sampler:
        raise InvalidRequest("the output grammar could not be parsed", "response_format")
    return sampler
