"""Whose cached state a prompt may start from: the slot choice (SlotTable, HostCache) with the
fake engine's KV, and the same through the scheduler. Another user's KV never serves as a
prefix (what was cached shows in the reply: it would tell one user what another asked); a
known conversation goes back to its own slot or saved copy."""

from __future__ import annotations

import queue

import pytest

from fakes import FakeEngine, fake_scheduler
from jisu.scheduler.prefix_cache import HostCache, SavedSequence
from jisu.scheduler.request import CacheOwner, Request
from jisu.scheduler.slots import SlotTable
from jisu.types import Finished, SamplingParams

ALICE, BOB = CacheOwner("alice"), CacheOwner("bob")
SYSTEM = list(range(100))  # a long system prompt, as token ids
QUESTION = SYSTEM + list(range(100, 140))


def table(slots: int = 2, host_cache_bytes: int = 10**8) -> SlotTable:
    return SlotTable(FakeEngine(n_sequences=slots), HostCache(host_cache_bytes))


def run(slots: SlotTable, prompt: list[int], owner: CacheOwner, answer: list[int] = ()) -> tuple[int, int]:
    """As the scheduler runs a request: take a slot, 'compute' the rest of the prompt and the
    answer into its KV, give it back. Returns (the slot's seq_id, tokens reused)."""
    slot, reuse, _ = slots.acquire(prompt, owner)
    held = slots.engine.kv.setdefault(slot.seq_id, [])
    assert held == prompt[:reuse], "a slot hands over exactly the KV it says it holds"
    held.extend([*prompt[reuse:], *answer])
    slots.release(slot, list(held))
    return slot.seq_id, reuse


def test_another_users_kv_is_not_a_prefix():
    slots = table()
    alice_slot, _ = run(slots, QUESTION, ALICE, [7, 7])
    bob_slot, reused = run(slots, QUESTION, BOB)
    assert reused == 0, "bob's prompt is alice's to the token, and still nothing of hers serves it"
    assert bob_slot != alice_slot, "alice's conversation stays where it was"
    assert run(slots, QUESTION, ALICE)[1] == len(QUESTION) - 1, "alice's own KV still serves her"


def test_a_shared_system_prompt_is_copied_only_within_a_user():
    slots = table()
    run(slots, QUESTION, ALICE)
    _, bob_reused = run(slots, SYSTEM + [1, 2, 3], BOB)
    assert bob_reused == 0
    _, alice_reused = run(slots, SYSTEM + [4, 5, 6], CacheOwner("alice", "conv_other"))
    assert alice_reused == len(SYSTEM), "another conversation of alice's starts from her system prompt"


def test_another_users_saved_copy_is_never_restored():
    slots = table(slots=1)
    run(slots, QUESTION, ALICE, [7] * 10)
    run(slots, list(range(500, 600)), BOB)  # takes the only slot: alice's KV goes to host memory
    assert len(slots.host_cache) == 1
    _, reused = run(slots, QUESTION + [7] * 10 + [8], BOB)
    assert reused == 0 and slots.engine.restores == 0
    _, reused = run(slots, QUESTION + [7] * 10 + [8], ALICE)
    assert reused == len(QUESTION) + 10 and slots.engine.restores == 1


def test_without_keys_everyone_is_one_user_and_shares_as_before():
    slots = table()
    local = CacheOwner("local")
    run(slots, QUESTION, local)
    _, reused = run(slots, QUESTION, CacheOwner("local", "conv_a"))
    assert reused == len(QUESTION) - 1


def test_a_conversation_goes_back_to_its_own_slot_when_prefixes_tie():
    slots = table()
    x, y = CacheOwner("alice", "conv_x"), CacheOwner("alice", "conv_y")
    # The same first turn in two conversations, each in a slot of its own.
    first_x, _ = run(slots, QUESTION, x, [7, 7])
    slot_y, _, _ = slots.acquire(QUESTION, y)
    assert slot_y.seq_id != first_x
    slots.engine.kv[slot_y.seq_id] = QUESTION + [7, 7]
    slots.release(slot_y, QUESTION + [7, 7])  # y's slot is now the most recently used
    seq_id, reused = run(slots, QUESTION + [7, 7, 9], x)
    assert seq_id == first_x, "x's second turn runs where x's first turn is, not in y's look-alike"
    assert reused == len(QUESTION) + 2


def test_a_new_branch_replaces_its_own_conversations_old_one_in_place():
    """Regenerating an answer (or editing the last message) shares only part of the slot's KV.
    It replaces the conversation's own old branch, in its own slot: another conversation's
    slot is neither taken over nor sent to host memory."""
    slots = table()
    x, z = CacheOwner("alice", "conv_x"), CacheOwner("alice", "conv_z")
    z_tokens = list(range(300, 400))
    z_slot, _ = run(slots, z_tokens, z)  # idle the longest: the slot that would be given up
    x_slot, _ = run(slots, QUESTION, x, [7] * 20)
    seq_id, reused = run(slots, QUESTION, x)  # the same question answered again
    assert seq_id == x_slot
    assert reused == len(QUESTION) - 1
    assert slots.engine.kv[z_slot] == z_tokens and len(slots.host_cache) == 0


def test_a_saved_copy_of_the_conversation_wins_a_tie():
    cache = HostCache(10**8)
    x, y = CacheOwner("alice", "conv_x"), CacheOwner("alice", "conv_y")
    cache.put(SavedSequence(QUESTION + [2], b"y" * 100, owner=y))
    cache.put(SavedSequence(QUESTION + [1], b"x" * 100, owner=x))
    key, length = cache.best_match(QUESTION + [3], x)
    assert length == len(QUESTION) and cache.take(key).owner == x
    assert cache.best_match(QUESTION, BOB) == (None, 0)


def test_a_saved_copy_covers_only_its_own_users_prompts():
    cache = HostCache(10**8)
    cache.put(SavedSequence(QUESTION + [1, 2], b"a" * 100, owner=ALICE))
    cache.put(SavedSequence(QUESTION, b"b" * 100, owner=BOB))
    assert len(cache) == 2, "alice's longer copy does not stand in for bob's"


@pytest.mark.parametrize("bob", [BOB, CacheOwner("bob", "conv_b")])
def test_the_scheduler_reuses_nothing_across_users(bob):
    with fake_scheduler(FakeEngine(), parallel=2) as scheduler:
        prompt = list(b"<|im_start|>user\nthe very same question<|im_end|>\n")

        def cached(owner: CacheOwner) -> int:
            events: queue.Queue = queue.Queue()
            scheduler.submit(Request(prompt, SamplingParams(temperature=0), events.put, owner))
            while not isinstance(event := events.get(timeout=10), Finished):
                pass
            return event.usage.cached_tokens

        assert cached(ALICE) == 0
        assert cached(bob) == 0
        assert cached(ALICE) == len(prompt), "alice's prompt again: all of it, its logits too"
