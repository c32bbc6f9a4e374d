"""Batch planning on hand-made requests: what each step carries, and in which order."""

from __future__ import annotations

import itertools

import pytest

from jisu.scheduler.batch_plan import (
    NEW_TURN_MAX_TOKENS,
    NEW_TURNS_STEP_TOKENS,
    could_start_as_new_turn,
    plan_step,
    prefill_order,
    turns_for_one_step,
)
from jisu.scheduler.request import Phase, Request
from jisu.scheduler.slots import Slot
from jisu.types import SamplingParams

GREEDY = SamplingParams(temperature=0)
SAMPLED = SamplingParams(temperature=0.8)
CAPACITY = 512
_seq_ids = itertools.count()


def prefilling(new_tokens: int, submitted_at: float = 0.0, cached: int = 100, sampling=GREEDY) -> Request:
    """A request whose first `cached` prompt tokens came from the cache."""
    request = Request(list(range(cached + new_tokens)), sampling, lambda event: None)
    request.cached_tokens = request.n_past = cached
    request.submitted_at = submitted_at
    request.phase = Phase.PREFILL
    request.slot = Slot(next(_seq_ids))
    return request


def decoding(prompt_tokens: int = 40) -> Request:
    """An answer streaming: its last sampled token is still to run."""
    request = Request(list(range(prompt_tokens)), SAMPLED, lambda event: None)
    request.phase = Phase.DECODE
    request.generated, request.next_token = [7, 8], 8
    request.n_past = prompt_tokens + 1
    request.slot = Slot(next(_seq_ids))
    return request


def unlimited(n_decoding: int) -> int:
    return CAPACITY


def plan(running, capacity=CAPACITY, prefill_budget=unlimited):
    return plan_step(running, capacity, prefill_budget)


def test_decoding_answers_and_a_document_share_a_step():
    answers, document = [decoding(), decoding()], prefilling(300, cached=0)
    step = plan(answers + [document], prefill_budget=lambda n: 40 if n == 2 else 0)
    assert step.owners == [*answers, document]
    assert [list(s.tokens) for s in step.slices[:2]] == [[8], [8]], "each answer's next token"
    assert [s.start_pos for s in step.slices[:2]] == [41, 41]
    chunk = step.slices[2]
    assert (list(chunk.tokens), chunk.start_pos, chunk.want_logits) == (list(range(40)), 0, False), \
        "the document's chunk is what the pacer allows next to two answers"
    assert (step.n_decoding, step.n_prefill, step.interruptible) == (2, 40, True)


def test_without_decoding_answers_a_prompt_fills_the_batch():
    document = prefilling(300, cached=0, sampling=SAMPLED)
    step = plan([document], capacity=64, prefill_budget=lambda n: pytest.fail("nobody waits on this step"))
    assert [len(s.tokens) for s in step.slices] == [64]
    assert not step.interruptible, "a prompt's chunk is never thrown away for someone else"


def test_a_new_turn_runs_alone_ahead_of_the_running_answers():
    answer, turn = decoding(), prefilling(20)
    step = plan([answer, turn])
    assert step.owners == [turn], "no running answer's token shares the new turn's step"
    assert step.slices[0].want_logits and len(step.slices[0].tokens) == 20
    assert step.n_decoding == 0 and not step.interruptible


def test_the_tail_of_a_long_prompt_keeps_sharing_steps():
    answer, document = decoding(), prefilling(300, cached=0)
    document.n_past = 290  # 10 tokens left, but not a new turn: it was a long prompt
    step = plan([answer, document])
    assert step.owners == [answer, document]


def test_new_turns_waiting_together_share_one_step_up_to_a_budget():
    answer = decoding()
    first, second, third = prefilling(60, 1.0), prefilling(60, 2.0), prefilling(20, 3.0)
    assert 60 + 60 <= NEW_TURNS_STEP_TOKENS < 60 + 60 + 20
    step = plan([answer, third, second, first])
    assert step.owners == [first, second], "whole turns, in the order they came"


def test_new_turns_go_first_in_arrival_order_then_documents_least_left_first():
    document, shorter_document = prefilling(500, 0.0, cached=0), prefilling(300, 0.5, cached=0)
    later, earlier, big = prefilling(20, 2.0), prefilling(21, 1.0), prefilling(NEW_TURN_MAX_TOKENS, 3.0)
    order = sorted([document, later, shorter_document, big, earlier], key=prefill_order)
    assert order == [earlier, later, big, shorter_document, document]
    assert turns_for_one_step(order) == [earlier, later, big], "the turns at the head, no document"
    assert turns_for_one_step([document, earlier]) == [], "a document at the head is no new turn"


def test_prompts_share_a_step_in_prefill_order_until_the_batch_is_full():
    document, turn = prefilling(300, 0.0, cached=0), prefilling(30, 1.0)
    step = plan([document, turn], capacity=100)
    assert step.owners == [turn, document]
    assert [len(s.tokens) for s in step.slices] == [30, 70]
    assert [s.want_logits for s in step.slices] == [True, False]


@pytest.mark.parametrize("sampling", ["greedy", "sampled"])
def test_a_prompt_alone_runs_whole_in_one_step_with_logits_for_its_last_token(sampling):
    request = prefilling(30, sampling=GREEDY if sampling == "greedy" else SAMPLED)
    step = plan([request])
    assert len(step.slices[0].tokens) == 30 and step.slices[0].want_logits, \
        "no token held back: the first answer token comes one step sooner"


def test_only_a_prompt_short_enough_to_be_a_new_turn_may_interrupt():
    assert could_start_as_new_turn(NEW_TURN_MAX_TOKENS)
    assert not could_start_as_new_turn(NEW_TURN_MAX_TOKENS + 1)
    assert not could_start_as_new_turn(None), "with no idle slot it would wait anyway"
