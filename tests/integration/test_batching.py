"""Batching and prefix reuse must not change answers: checked on the real engine.

llama.cpp's batched kernels may round differently from single-sequence ones, so logits are
compared within a tolerance (measured: see the assertion messages) and greedy answers
exactly.
"""

from __future__ import annotations

import queue

import llama_cpp.llama_cpp as C
import numpy as np
import pytest

from helpers import run_chat, run_tokens
from jisu.config import EngineConfig
from jisu.engine.llama import LlamaEngine
from jisu.engine.protocol import BatchSlice, StepInterrupted
from jisu.engine.template import render_chat, turn_markers
from jisu.runtime import Runtime
from jisu.types import ChatMessage, Finished, SamplingParams

# Measured on the stand-in model (logits span about -13..20): alone vs in a batch of four
# prompts, max |Δlogit| 0.28, mean 0.04, KL(alone || batched) 0.001, max |Δp| 0.018.
MAX_LOGIT_DRIFT = 0.5
MAX_KL = 0.01

PROMPT = [ChatMessage("user", "Explain in two sentences why the sky is blue.")]
OTHERS = ["写一首关于秋天的短诗。", "List five prime numbers.", "What is the capital of France?"]


@pytest.fixture(scope="module")
def engine(model_path):
    with LlamaEngine(EngineConfig(model_path, ctx_size=2048, parallel=4)) as loaded:
        yield loaded


def chat_ids(engine, messages):
    return engine.tokenizer.tokenize_segments(render_chat(messages))


def assert_logits_agree(expected: np.ndarray, actual: np.ndarray, what: str) -> None:
    def log_softmax(x):
        x = x - x.max()
        return x - np.log(np.exp(x).sum())

    drift = float(np.max(np.abs(expected - actual)))
    p, q = log_softmax(expected), log_softmax(actual)
    kl = float(np.sum(np.exp(p) * (p - q)))
    assert int(np.argmax(expected)) == int(np.argmax(actual)), f"{what}: the top token changed"
    assert drift < MAX_LOGIT_DRIFT, f"{what}: logits drifted by up to {drift:.3f}"
    assert kl < MAX_KL, f"{what}: KL divergence {kl:.5f}"


def logits(engine: LlamaEngine, row: int) -> np.ndarray:
    """A copy of the logits decode() left at `row` (what the engine's sampler reads)."""
    pointer = C.llama_get_logits_ith(engine.ctx, row)
    return np.ctypeslib.as_array(pointer, shape=(engine.tokenizer.n_vocab,)).copy()


def first_logits_alone(engine, tokens, seq=0):
    engine.forget(seq)
    out = engine.decode([BatchSlice(seq, tokens, 0, True)])
    return logits(engine, out[0])


def test_first_token_logits_agree_alone_and_batched(engine):
    tokens = chat_ids(engine, PROMPT)
    alone = first_logits_alone(engine, tokens)
    for seq in range(4):
        engine.forget(seq)
    others = [chat_ids(engine, [ChatMessage("user", text)]) for text in OTHERS]
    outputs = engine.decode([BatchSlice(0, tokens, 0, True)] +
                            [BatchSlice(i + 1, t, 0, True) for i, t in enumerate(others)])
    assert_logits_agree(alone, logits(engine, outputs[0]), "alone vs batched with three others")


def test_reused_prefix_gives_the_same_logits_as_a_cold_prompt(engine):
    conversation = PROMPT + [ChatMessage("assistant", "Because of Rayleigh scattering."),
                             ChatMessage("user", "And why are sunsets red?")]
    full = chat_ids(engine, conversation)
    first_turn = chat_ids(engine, PROMPT)
    shared = 0
    while shared < min(len(full), len(first_turn)) and full[shared] == first_turn[shared]:
        shared += 1
    cold = first_logits_alone(engine, full)
    engine.forget(1)
    engine.decode([BatchSlice(1, full[:shared], 0, False)])  # the earlier turn, already cached
    out = engine.decode([BatchSlice(1, full[shared:], shared, True)])
    assert_logits_agree(cold, logits(engine, out[0]), "cold prompt vs reused prefix")


def test_saved_and_restored_kv_continues_identically(engine):
    tokens = chat_ids(engine, PROMPT)
    engine.forget(2)
    engine.decode([BatchSlice(2, tokens[:-1], 0, False)])
    saved = engine.save_sequence(2)
    direct = logits(engine, engine.decode([BatchSlice(2, tokens[-1:], len(tokens) - 1, True)])[0])
    engine.forget(2)
    engine.restore_sequence(3, saved)
    restored = logits(engine, engine.decode([BatchSlice(3, tokens[-1:], len(tokens) - 1, True)])[0])
    assert np.array_equal(direct, restored), "a restored KV copy must be bit-identical"


def test_greedy_answer_is_the_same_alone_and_alongside_three_others(runtime):
    alone, _ = run_chat(runtime, PROMPT, temperature=0, max_tokens=32)
    sinks = []
    for text in OTHERS:
        events: queue.Queue = queue.Queue()
        runtime.start(runtime.prepare_chat([ChatMessage("user", text)], SamplingParams(temperature=0, max_tokens=48)),
                      events.put)
        sinks.append(events)
    together, _ = run_chat(runtime, PROMPT, temperature=0, max_tokens=32)
    for events in sinks:
        while not isinstance(events.get(timeout=120), Finished):
            pass
    assert together == alone


def test_cached_conversation_answers_like_a_cold_engine(runtime, standin_model):
    first, _ = run_chat(runtime, PROMPT, temperature=0, max_tokens=32)
    conversation = PROMPT + [ChatMessage("assistant", first), ChatMessage("user", "Say it shorter.")]
    warm, warm_finished = run_chat(runtime, conversation, temperature=0, max_tokens=32)
    assert warm_finished.usage.cached_tokens > 20, "turn 2 should have reused turn 1"
    with Runtime.load(standin_model, EngineConfig(standin_model.path, ctx_size=2048, parallel=1),
                      reuse_prefixes=False) as cold_runtime:
        cold, cold_finished = run_chat(cold_runtime, conversation, temperature=0, max_tokens=32)
    assert cold_finished.usage.cached_tokens == 0
    assert warm == cold


def test_ten_turn_conversation_processes_only_each_new_turn(runtime):
    counters = runtime.counters
    messages = [ChatMessage("system", "You are a terse assistant. Answer in a few words.")]
    for turn in range(10):
        messages.append(ChatMessage("user", f"Turn {turn}: name a color."))
        tokens = runtime.tokenizer.tokenize_segments(render_chat(messages))
        before = counters.prompt_tokens_processed
        answer, finished = run_tokens(runtime, tokens, temperature=0, max_tokens=12)
        processed = counters.prompt_tokens_processed - before
        if turn > 0:
            new_turn = len(tokens) - finished.usage.cached_tokens
            assert processed == new_turn
            # the previous answer's <|im_end|>\n<|im_start|>user\n was run when it ended
            words = runtime.tokenizer.tokenize(f"{messages[-1].content}<|im_end|>\n<|im_start|>assistant\n",
                                               special=True)
            assert new_turn <= len(words) + 1, \
                f"turn {turn} re-processed {new_turn} of {len(tokens)} prompt tokens"
        messages.append(ChatMessage("assistant", answer))


def test_chat_turn_markers_are_chatmls(runtime):
    reply_opening, closing = turn_markers(runtime.tokenizer)
    tokenize = runtime.tokenizer.tokenize
    assert reply_opening == tokenize("<|im_start|>assistant\n", special=True)
    assert closing == tokenize("<|im_end|>\n<|im_start|>user\n", special=True)


def test_an_interrupted_step_leaves_every_sequence_where_it_was(engine):
    tokens = chat_ids(engine, PROMPT)
    expected = first_logits_alone(engine, tokens)
    engine.forget(0)
    engine.forget(1)
    engine.decode([BatchSlice(0, tokens[:5], 0, False)])
    engine.interrupt()  # set before the call: llama.cpp stops at the first node it checks
    with pytest.raises(StepInterrupted):
        engine.decode([BatchSlice(0, tokens[5:], 5, True), BatchSlice(1, tokens, 0, True)])
    engine.clear_interrupt()
    # llama.cpp refuses positions that do not follow the sequence's last one, so these
    # decodes succeeding shows sequence 0 still ends at 5 tokens and sequence 1 is empty.
    out = engine.decode([BatchSlice(0, tokens[5:], 5, True), BatchSlice(1, tokens[:3], 0, False)])
    assert_logits_agree(expected, logits(engine, out[0]), "after an interrupted step")
