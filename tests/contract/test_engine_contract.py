"""The Engine protocol's contract, run against the llama.cpp engine and the unit tests' fake.

The scheduler relies on every promise here; the fake stands in for llama.cpp in the fast
tests, so a promise the fake keeps and llama.cpp does not (or the other way round) would
let those tests pass over a broken server. Each test runs once per engine.

The fake is stricter than llama.cpp in two ways, both to catch scheduler bugs: a batch for
an empty sequence must start at position 0 (llama.cpp takes any start there), and a batch
may hold one slice per sequence.
"""

from __future__ import annotations

import math

import pytest

from fakes import FakeEngine
from jisu.config import EngineConfig
from jisu.engine.protocol import BatchSlice, Engine, EngineError, StepInterrupted, TokenSampler, Tokenizer
from jisu.engine.template import Segment
from jisu.structured.plan import plan_output
from jisu.types import InvalidRequest, SamplingParams

GREEDY = SamplingParams(temperature=0)
VALID_GRAMMAR = 'root ::= "yes" | "no"'


@pytest.fixture(scope="module", params=["fake", pytest.param("llama", marks=pytest.mark.model)])
def engine(request):
    if request.param == "fake":
        made = FakeEngine(n_sequences=4, batch_capacity=64)
    else:
        from jisu.engine.llama import LlamaEngine

        model = request.getfixturevalue("standin_model")
        made = LlamaEngine(EngineConfig(model_path=model.path, ctx_size=512, parallel=4, batch_size=64))
    yield made
    made.close()


@pytest.fixture
def fresh(engine):
    """The engine with every sequence empty, before and after the test."""
    for seq_id in range(engine.n_sequences):
        engine.forget(seq_id)
    engine.clear_interrupt()
    yield engine
    for seq_id in range(engine.n_sequences):
        engine.forget(seq_id)
    engine.clear_interrupt()


def prompt(engine: Engine, text: str = "Hello, world. How are you?") -> list[int]:
    return engine.tokenizer.tokenize(text)


def next_greedy_token(engine: Engine, seq_id: int, tokens: list[int], start: int = 0) -> int:
    """Run tokens[start:] into sequence `seq_id` and pick the next token greedily."""
    [row] = engine.decode([BatchSlice(seq_id, tokens[start:], start, True)])
    return greedy_pick(engine, tokens, row)


def greedy_pick(engine: Engine, tokens: list[int], logits) -> int:
    """The greedy choice from a logits row or a kept copy, by a sampler made for `tokens`."""
    sampler = engine.new_sampler(GREEDY, tokens)
    try:
        return sampler.sample(logits)
    finally:
        sampler.close()


def test_it_is_an_engine_with_a_tokenizer(engine):
    assert isinstance(engine, Engine), "the scheduler is written against jisu.engine.protocol.Engine"
    assert isinstance(engine.tokenizer, Tokenizer)
    assert engine.n_sequences >= 1 and engine.ctx_size >= 1 and engine.batch_capacity >= 1


def test_decode_gives_a_logits_row_exactly_for_the_slices_that_ask(fresh):
    tokens = prompt(fresh)
    rows = fresh.decode([BatchSlice(0, tokens, 0, True), BatchSlice(1, tokens, 0, False),
                         BatchSlice(2, tokens[:3], 0, True)])
    assert len(rows) == 3, "one entry per slice, in order"
    assert rows[1] is None, "no logits were asked for the second slice"
    assert isinstance(rows[0], int) and isinstance(rows[2], int) and rows[0] != rows[2]


def test_a_sampler_picks_a_token_of_the_vocabulary(fresh):
    token = next_greedy_token(fresh, 0, prompt(fresh))
    assert 0 <= token < fresh.tokenizer.n_vocab
    sampler = fresh.new_sampler(GREEDY, prompt(fresh))
    assert isinstance(sampler, TokenSampler)
    sampler.close()


def test_kept_logits_outlive_later_steps_and_sample_like_their_row(fresh):
    # The scheduler keeps a prompt's last logits with its KV, to answer the same prompt again
    # without running its last token again (jisu.scheduler.prefix_cache.PromptEnd).
    tokens = prompt(fresh)
    [row] = fresh.decode([BatchSlice(0, tokens, 0, True)])
    kept = fresh.copy_logits(row)
    expected = greedy_pick(fresh, tokens, row)
    fresh.decode([BatchSlice(1, prompt(fresh, "Other words entirely"), 0, True)])  # reuses the buffer
    assert kept.nbytes > 0, "the host cache counts what it keeps"
    assert [greedy_pick(fresh, tokens, kept) for _ in range(2)] == [expected, expected], \
        "sampling must leave the kept copy as it was: it may answer the same prompt again"


def test_a_scored_sample_is_the_same_token_with_the_models_log_probabilities(fresh):
    tokens = prompt(fresh)
    plain = next_greedy_token(fresh, 0, tokens)
    [row] = fresh.decode([BatchSlice(1, tokens, 0, True)])
    sampler = fresh.new_sampler(GREEDY, tokens)
    try:
        scored = sampler.sample_with_logprobs(row, 5)
    finally:
        sampler.close()
    assert scored.token == plain, "asking for logprobs must not change the answer"
    assert len(scored.top) == 5 and [lp for _, lp in scored.top] == sorted((lp for _, lp in scored.top), reverse=True)
    assert scored.top[0] == (scored.token, scored.logprob), "greedy picks the likeliest token"
    assert all(lp <= 0 for _, lp in scored.top) and sum(math.exp(lp) for _, lp in scored.top) <= 1 + 1e-6, \
        "log-probabilities of one distribution"
    assert all(0 <= token < fresh.tokenizer.n_vocab for token, _ in scored.top)


def test_logprobs_are_the_models_whatever_the_sampling_settings(fresh):
    """OpenAI's logprobs do not change with temperature or logit_bias: the same logits give
    the same figures, and the bias still decides the token."""
    tokens = prompt(fresh)
    [row] = fresh.decode([BatchSlice(0, tokens, 0, True)])
    greedy = fresh.new_sampler(GREEDY, tokens)
    hot = fresh.new_sampler(SamplingParams(temperature=1.5, top_k=3, seed=1), tokens)
    try:
        expected = greedy.sample_with_logprobs(row, 3)
        assert hot.sample_with_logprobs(row, 3).top == expected.top
    finally:
        greedy.close()
        hot.close()


def test_greedy_answers_do_not_depend_on_the_sequence_or_the_batch(fresh):
    tokens = prompt(fresh)
    alone = next_greedy_token(fresh, 0, tokens)
    rows = fresh.decode([BatchSlice(1, tokens, 0, True), BatchSlice(2, prompt(fresh, "Other words"), 0, True)])
    sampler = fresh.new_sampler(GREEDY, tokens)
    assert sampler.sample(rows[0]) == alone, "a sequence's answer must not change with its neighbours"
    sampler.close()


def test_slices_out_of_sequence_order_each_get_their_own_row(fresh):
    # The llama.cpp engine lays a batch out by sequence id (one pass instead of several):
    # each slice must still get the logits of its own sequence.
    first, second = prompt(fresh), prompt(fresh, "你好，世界")
    expected = [next_greedy_token(fresh, 2, second), next_greedy_token(fresh, 3, first)]
    rows = fresh.decode([BatchSlice(1, second, 0, True), BatchSlice(0, first, 0, True)])
    for row, tokens, want in zip(rows, (second, first), expected):
        sampler = fresh.new_sampler(GREEDY, tokens)
        assert sampler.sample(row) == want, "a slice read another sequence's logits"
        sampler.close()


def test_a_sequence_continues_where_its_kv_ends(fresh):
    tokens = prompt(fresh)
    whole = next_greedy_token(fresh, 0, tokens)
    fresh.decode([BatchSlice(1, tokens[:4], 0, False)])
    assert next_greedy_token(fresh, 1, tokens, start=4) == whole, "prefill in two chunks = in one"


def test_a_batch_that_skips_positions_is_refused_and_leaves_the_kv_as_it_was(fresh):
    tokens = prompt(fresh)
    fresh.decode([BatchSlice(0, tokens[:4], 0, False)])
    with pytest.raises(EngineError):
        fresh.decode([BatchSlice(0, tokens[4:], 6, True)])
    fresh.decode([BatchSlice(0, tokens[4:], 4, False)])  # the sequence still ends at 4


def test_a_batch_over_capacity_is_refused(fresh):
    with pytest.raises(EngineError):
        fresh.decode([BatchSlice(0, [prompt(fresh)[0]] * (fresh.batch_capacity + 1), 0, True)])
    fresh.decode([BatchSlice(0, prompt(fresh), 0, False)])  # nothing of it was kept


def test_forget_drops_the_kv_from_a_position_on(fresh):
    tokens = prompt(fresh)
    expected = next_greedy_token(fresh, 0, tokens)
    fresh.forget(0, 3)
    assert next_greedy_token(fresh, 0, tokens, start=3) == expected, "positions 0-2 were kept"
    fresh.forget(0)
    fresh.decode([BatchSlice(0, tokens[:2], 0, False)])  # empty again: a prompt starts at 0


def test_a_saved_sequence_restores_into_another_and_continues_the_same(fresh):
    tokens = prompt(fresh)
    expected = next_greedy_token(fresh, 0, tokens)
    fresh.forget(0, len(tokens) - 1)
    saved = fresh.save_sequence(0)
    assert isinstance(saved, (bytes, bytearray)) and saved
    fresh.restore_sequence(3, saved)
    assert next_greedy_token(fresh, 3, tokens, start=len(tokens) - 1) == expected


def test_a_damaged_saved_sequence_is_refused_and_leaves_it_empty(fresh):
    tokens = prompt(fresh)
    fresh.decode([BatchSlice(1, tokens, 0, False)])
    with pytest.raises(EngineError):
        fresh.restore_sequence(1, b"not a saved sequence" * 3)
    fresh.decode([BatchSlice(1, tokens[:2], 0, False)])  # empty: a new prompt starts at 0


def test_an_interrupt_stops_the_step_and_keeps_nothing_of_it(fresh):
    tokens = prompt(fresh)
    fresh.interrupt()
    with pytest.raises(StepInterrupted):
        fresh.decode([BatchSlice(0, tokens, 0, True)])
    with pytest.raises(StepInterrupted):  # it stays armed until cleared
        fresh.decode([BatchSlice(0, tokens, 0, True)])
    fresh.clear_interrupt()
    assert fresh.decode([BatchSlice(0, tokens, 0, True)])[0] is not None, "the same slices run again"


def test_grammars_are_checked_before_generation(engine):
    engine.check_grammar(VALID_GRAMMAR)
    engine.check_grammar('root ::= "<tool_call>" [a-z]+', trigger="<tool_call>")
    for broken in ('answer ::= "yes"', 'root ::= ("yes"', 'root ::= "yes'):
        with pytest.raises(InvalidRequest):
            engine.check_grammar(broken)


def test_the_tool_call_trigger_is_a_pattern_the_engine_accepts(engine):
    """tool_choice auto's trigger is a regular expression llama.cpp compiles (std::regex); one it
    could not compile would abort the process, not raise."""
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    plan = plan_output(None, [weather, {"type": "function", "function": {"name": "get.time-zone"}}], "auto")
    engine.check_grammar(plan.grammar, trigger=plan.lazy_trigger)


@pytest.mark.parametrize("text", ["Hello, world", "你好，世界！", "tabs\tand\nlines", "emoji 🙂 ok"])
def test_text_survives_tokens_and_pieces(engine, text):
    tokenizer = engine.tokenizer
    tokens = tokenizer.tokenize(text)
    assert tokenizer.detokenize(tokens) == text
    assert b"".join(tokenizer.piece(t) for t in tokens) == text.encode(), "pieces are the text's bytes"


def test_control_markers_are_tokens_only_when_asked(engine):
    tokenizer = engine.tokenizer
    [end_of_turn] = tokenizer.tokenize("<|im_end|>", special=True)
    assert tokenizer.is_end_of_generation(end_of_turn)
    assert tokenizer.piece(end_of_turn) == b"", "control tokens render as nothing"
    as_text = tokenizer.tokenize("<|im_end|>")
    assert end_of_turn not in as_text and tokenizer.detokenize(as_text) == "<|im_end|>"
    assert not any(tokenizer.is_end_of_generation(t) for t in tokenizer.tokenize("Hello"))


def test_control_tokens_render_as_markers_when_asked(engine):
    """/detokenize must give back what /tokenize read, control tokens included."""
    tokenizer = engine.tokenizer
    text = "<|im_start|>user\n你好<|im_end|>"
    tokens = tokenizer.tokenize(text, special=True)
    assert tokenizer.detokenize(tokens, special=True) == text
    assert tokenizer.detokenize(tokens) == "user\n你好", "without `special` control tokens stay silent"
    [end_of_turn] = tokenizer.tokenize("<|im_end|>", special=True)
    assert tokenizer.piece(end_of_turn, special=True) == b"<|im_end|>"
    assert tokenizer.piece(end_of_turn) == b"", "asking once with `special` changes no later answer"


def test_segments_tokenize_each_in_its_own_way(engine):
    tokenizer = engine.tokenizer
    segments = [Segment("<|im_start|>", True), Segment("user\n<|im_end|>", False), Segment("<|im_end|>", True)]
    expected = [t for s in segments for t in tokenizer.tokenize(s.text, special=s.special)]
    assert tokenizer.tokenize_segments(segments) == expected
