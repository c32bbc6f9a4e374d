"""Step pacing: prefill shares of a step follow the measured speeds of this machine."""

from jisu.scheduler.pacing import MIN_PREFILL_CHUNK, StepPacer


def test_budget_shrinks_as_more_answers_decode():
    pacer = StepPacer(budget_s=0.35)
    for _ in range(30):
        pacer.record(1, 0, 0.05)
        pacer.record(8, 0, 0.17)
        pacer.record(1, 200, 1.05)  # 200 prompt tokens per second next to one answer
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


def test_steps_stay_near_the_budget_as_a_long_prompt_gets_slower():
    """Each new prompt token attends to all before it, so the chunks must shrink as the
    prompt grows; the pace is learned however small they get."""
    pacer = StepPacer(budget_s=0.35)
    depth, step_times = 0, []
    while depth < 3000:
        pacer.record(4, 0, 0.1)
        chunk = pacer.prefill_budget(4)
        seconds_per_token = 0.007 + 4e-6 * depth  # weights, plus attention over the depth
        elapsed = 0.1 + chunk * seconds_per_token
        pacer.record(4, chunk, elapsed)
        step_times.append(elapsed)
        depth += chunk
    settled = step_times[5:]
    assert max(settled) < 0.4, max(settled)
    assert min(settled) > 0.3, min(settled)


def test_prompt_only_steps_do_not_set_the_pace():
    pacer = StepPacer(budget_s=0.35)
    pacer.record(4, 0, 0.1)
    before = pacer.prefill_budget(4)
    pacer.record(0, 512, 0.5)  # a fresh prompt alone: fast, and nobody waited on it
    assert pacer.prefill_budget(4) == before
