"""The sampler's mirror of llama.cpp's penalty window: which tokens a penalty can touch."""

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
