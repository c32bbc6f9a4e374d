"""The sampler's mirror of llama.cpp's penalty window: which tokens a penalty can touch."""

import numpy as np
import pytest

from jisu.engine.sampling import PenaltyWindow


def test_the_window_starts_with_the_prompts_last_tokens():
    window = PenaltyWindow(3, [1, 2, 3, 4, 5])
    assert [window.contains(t) for t in (1, 2, 3, 4, 5)] == [False, False, True, True, True]


def test_a_token_leaves_when_its_last_copy_drops_out():
    window = PenaltyWindow(3, [7])
    for token in (8, 7, 9):
        window.push(token)  # the window is now 8, 7, 9
    assert window.contains(7) and window.contains(8)
    window.push(10)  # 7, 9, 10: the first 7 and the 8 are gone, the second 7 stays
    assert window.contains(7) and not window.contains(8)
    window.push(11)
    window.push(12)
    assert not window.contains(7) and not window.contains(9)


def penalized_argmax_reference(logits, recent, penalty):
    """llama.cpp's penalties sampler then greedy, over the whole vocabulary in id order."""
    values = logits.copy()
    for token in set(recent):
        values[token] = values[token] * penalty if values[token] <= 0 else values[token] / penalty
    return int(values.argmax())  # the first of equal maxima: the lowest id


@pytest.mark.parametrize("seed", range(40))
def test_greedy_under_a_repetition_penalty_picks_what_the_whole_chain_picks(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, 1000).astype(np.float32)
    recent = list(rng.integers(0, 1000, 16))
    best = int(logits.argmax())
    recent[0] = best  # the case the window decides: its best token is a recent one
    if seed % 4 == 0:  # the best recent token, penalized, ties with the best other one
        tie = np.float32(logits[best] / np.float32(1.3))
        others = np.ones(len(logits), bool)
        others[recent] = False
        logits[others & (logits >= tie)] = tie - 1
        other = int(np.flatnonzero(others)[seed % 3])  # a low id: the tie is decided by id
        logits[other] = tie
    if seed % 4 == 1:  # every logit negative: the penalty multiplies
        logits -= logits.max() + 1
    window = PenaltyWindow(16, recent, repetition_penalty=1.3)
    before = logits.copy()
    assert window.best_after_penalty(logits) == penalized_argmax_reference(logits, recent, np.float32(1.3))
    assert np.array_equal(logits, before), "the logits are left as they were"
