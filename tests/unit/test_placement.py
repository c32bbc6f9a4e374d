"""Running sequences kept next to each other (placement.py, SlotTable.compact): with a KV
stream per sequence llama.cpp reads all the weights once per run of consecutive sequence ids
in a batch, so holes between running sequences multiply the cost of every step."""

from __future__ import annotations

import pytest

from fakes import FakeEngine, fake_scheduler
from jisu.scheduler.placement import compaction_moves
from jisu.scheduler.prefix_cache import HostCache
from jisu.scheduler.slots import SlotTable
from test_scheduler import GREEDY, prompt, submit, wait_finished
from jisu.types import TextDelta


def runs(ids) -> int:
    ordered = sorted(ids)
    return 1 + sum(b != a + 1 for a, b in zip(ordered, ordered[1:]))


def after(busy: set[int], moves: list[tuple[int, int]]) -> set[int]:
    placed = set(busy)
    for busy_seq, idle_seq in moves:
        assert busy_seq in placed and idle_seq not in placed, "a move takes a busy sequence to an idle one"
        placed = placed - {busy_seq} | {idle_seq}
    return placed


@pytest.mark.parametrize("busy", [{0, 2, 4, 6}, {1, 3, 5, 7}, {0, 1, 6, 7}, {0, 7}, {0, 1, 2, 3, 4, 5, 7},
                                  {2, 3, 4, 7}, {5, 6, 7, 0}])
def test_holes_are_filled_with_the_fewest_moves(busy):
    moves = compaction_moves(busy, 8)
    assert runs(after(busy, moves)) == 1, "every running sequence ends in one run of ids"
    best_window = max(sum(start <= seq < start + len(busy) for seq in busy) for start in range(8 - len(busy) + 1))
    assert len(moves) == len(busy) - best_window, "sequences already in the best window stay"


@pytest.mark.parametrize("busy", [set(), {3}, {0, 1, 2}, {4, 5, 6, 7}, set(range(8))])
def test_one_run_already_needs_no_moves(busy):
    assert compaction_moves(busy, 8) == []


def test_compact_swaps_the_kv_and_the_slots_keep_their_contents():
    engine = FakeEngine(n_sequences=4)
    slots = SlotTable(engine, HostCache(10**8))
    taken = [slots.acquire([n] * 20)[0] for n in range(4)]
    for slot in taken:
        engine.kv[slot.seq_id] = [slot.seq_id + 10] * 20  # what each sequence has computed
    slots.release(taken[1], [11] * 20)  # busy: 0, 2, 3; sequence 1 idle with a conversation
    before = {id(slot): engine.kv[slot.seq_id] for slot in taken}
    assert slots.compact() == 1
    assert sorted(slot.seq_id for slot in slots.slots if slot.busy) == [0, 1, 2]
    for slot in taken:
        assert engine.kv[slot.seq_id] == before[id(slot)], "each slot's KV moved with it"
    assert taken[1].tokens == [11] * 20, "the idle conversation is still there to be reused"


def test_answers_are_the_same_when_their_sequences_move():
    engine = FakeEngine()
    engine.step_delay_s = 0.003
    engine.answer = lambda p: ("y" * 400) if "long" in p else "short answer"
    with fake_scheduler(engine, parallel=4) as scheduler:
        handles = [submit(scheduler, prompt(scheduler, f"{kind} question {i}"))
                   for i, kind in enumerate(["long", "short", "long", "short"])]
        texts = ["".join(e.text for e in wait_finished(events, timeout=30) if isinstance(e, TextDelta))
                 for _, events in handles]
    assert texts == ["y" * 400, "short answer", "y" * 400, "short answer"]
    two_long = [batch for batch in engine.batches if len(batch) == 2 and all(len(s.tokens) == 1 for s in batch)]
    assert two_long and all(runs(s.seq_id for s in batch) == 1 for batch in two_long), \
        "once the short answers end, the two long ones decode side by side"
