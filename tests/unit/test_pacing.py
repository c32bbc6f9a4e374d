"""Step pacing: prefill shares of a step follow the measured speeds of this machine."""

from jisu.scheduler.pacing import MIN_PREFILL_CHUNK, StepPacer


def test_budget_shrinks_as_more_answers_decode():
    pacer = StepPacer(budget_s=0.35)
    for _ in range(30):
        pacer.record(1, 0, 0.05)
        pacer.record(8, 0, 0.17)
        pacer.record(0, 400, 2.0)  # 200 prompt tokens per second
    assert pacer.prefill_budget(1) > pacer.prefill_budget(8) >= MIN_PREFILL_CHUNK
    # (0.35 - 0.17) s at 200 tok/s is about 36 tokens next to eight decoding answers
    assert 30 <= pacer.prefill_budget(8) <= 40


def test_a_long_prompt_always_advances():
    pacer = StepPacer(budget_s=0.35)
    pacer.record(8, 0, 0.5)  # decoding alone already overruns the budget
    assert pacer.prefill_budget(8) == MIN_PREFILL_CHUNK


def test_unmeasured_counts_borrow_from_smaller_ones():
    pacer = StepPacer()
    pacer.record(2, 0, 0.08)
    assert pacer.decode_step_s(4) == 0.08


def test_prefill_speed_excludes_the_decode_share_of_a_step():
    pacer = StepPacer()
    for _ in range(30):
        pacer.record(4, 0, 0.1)
        pacer.record(4, 100, 0.6)  # 0.1 s of decode + 100 tokens in 0.5 s
    assert 190 <= pacer.prefill_tokens_per_s <= 210
