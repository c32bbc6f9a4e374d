"""Scheduling logic on the fake engine: batching, prefix reuse, queueing, cancellation."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from fakes import FakeEngine, fake_runtime
from jisu.engine.template import render_chat
from jisu.scheduler.loop import QueueFull
from jisu.types import (
    ChatMessage,
    ContextOverflow,
    Failed,
    Finished,
    FinishReason,
    PrefillProgress,
    Queued,
    SamplingParams,
    TextDelta,
)

GREEDY = SamplingParams(temperature=0)


def collect(runtime, tokens, sampling=GREEDY):
    text, events = [], []
    for event in runtime.stream(tokens, sampling):
        events.append(event)
        if isinstance(event, TextDelta):
            text.append(event.text)
    return "".join(text), events


def submit(runtime, tokens, sampling=GREEDY):
    events: queue.Queue = queue.Queue()
    request = runtime.submit(tokens, sampling, events.put)
    return request, events


def wait_finished(events: queue.Queue, timeout: float = 10) -> list:
    seen = []
    while True:
        event = events.get(timeout=timeout)
        seen.append(event)
        if isinstance(event, (Finished, Failed)):
            return seen


def wait_streaming(events: queue.Queue) -> None:
    """Until the request has sent its first text (events stay in the queue for the test)."""
    wait_until(lambda: any(isinstance(e, TextDelta) for e in list(events.queue)))


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def runtime(engine):
    with fake_runtime(engine) as rt:
        yield rt


def prompt(runtime, text: str) -> list[int]:
    return runtime.chat_tokens([ChatMessage("user", text)])


def test_answer_streams_and_finishes_with_usage(runtime):
    tokens = prompt(runtime, "hi")
    request, events = submit(runtime, tokens)
    seen = wait_finished(events)
    text = "".join(e.text for e in seen if isinstance(e, TextDelta))
    assert text == "Hello from the fake model!"
    finished = seen[-1]
    assert isinstance(finished, Finished) and finished.reason is FinishReason.STOP
    assert finished.usage.prompt_tokens == len(tokens)
    assert finished.usage.completion_tokens == finished.timings.completion_tokens == len(text)
    # the timings are read off the request's clock, stamped as it moved on
    assert request.submitted_at <= request.started_at <= request.first_token_at, \
        "admission and the first token must each be stamped when they happen"
    assert finished.timings.time_to_first_token_s == request.first_token_at - request.submitted_at
    assert finished.timings.prefill_s == request.first_token_at - request.started_at


def test_requests_run_together_in_one_batch(engine):
    engine.step_delay_s = 0.01
    with fake_runtime(engine, parallel=3) as runtime:
        handles = [submit(runtime, prompt(runtime, f"question {i}")) for i in range(3)]
        for _, events in handles:
            assert isinstance(wait_finished(events)[-1], Finished)
    widest = max(len({s.seq_id for s in batch}) for batch in engine.batches)
    assert widest == 3, "continuous batching must decode all running sequences in one call"


def test_a_finished_request_leaves_without_waiting_for_others(engine):
    engine.answer = lambda p: "x" * (3 if "short" in p else 1500)
    engine.step_delay_s = 0.002
    seen: list[tuple[str, object]] = []  # both sinks run on the engine thread: one order

    def events_of(who):
        return [e for name, e in list(seen) if name == who]

    def streamed_after_short_finished():
        snapshot = list(seen)
        ends = [i for i, (name, e) in enumerate(snapshot) if name == "short" and isinstance(e, Finished)]
        return bool(ends) and any(name == "long" and isinstance(e, TextDelta) for name, e in snapshot[ends[0]:])

    with fake_runtime(engine, parallel=2) as runtime:
        long_answer = runtime.submit(prompt(runtime, "long"), GREEDY, lambda e: seen.append(("long", e)))
        wait_until(lambda: any(isinstance(e, TextDelta) for e in events_of("long")))
        runtime.submit(prompt(runtime, "short"), GREEDY, lambda e: seen.append(("short", e)))
        wait_until(streamed_after_short_finished)  # the long answer still streaming after it
        long_answer.cancel()
        wait_until(lambda: any(isinstance(e, Finished) for e in events_of("long")))
    assert "".join(e.text for e in events_of("short") if isinstance(e, TextDelta)) == "xxx"


def test_max_tokens_and_stop_strings(runtime):
    text, events = collect(runtime, prompt(runtime, "hi"), SamplingParams(temperature=0, max_tokens=5))
    assert text == "Hello" and events[-1].reason is FinishReason.LENGTH
    text, events = collect(runtime, prompt(runtime, "hi"), SamplingParams(temperature=0, stop=["fake"]))
    assert text == "Hello from the " and events[-1].reason is FinishReason.STOP


def test_next_turn_reuses_the_cached_conversation(runtime, engine):
    first_messages = [ChatMessage("user", "first question")]
    first = render_chat(first_messages)
    answer, _ = collect(runtime, runtime.tokenizer.tokenize_segments(first))
    counters = runtime.scheduler.counters
    before = counters.prompt_tokens_processed
    second_messages = first_messages + [ChatMessage("assistant", answer), ChatMessage("user", "and then?")]
    second = runtime.chat_tokens(second_messages)
    _, events = collect(runtime, second)
    processed = counters.prompt_tokens_processed - before
    closing = runtime.tokenizer.tokenize("<|im_end|>\n<|im_start|>user\n", special=True)
    new_words = runtime.tokenizer.tokenize("and then?<|im_end|>\n<|im_start|>assistant\n", special=True)
    assert counters.turn_closing_tokens >= len(closing), "turn 1's answer was closed as soon as it ended"
    assert processed == len(new_words), "turn 2 must only process what turn 1 did not already hold"
    assert events[-1].usage.cached_tokens == len(second) - len(new_words)


def test_turn_closing_is_only_run_after_whole_chat_answers(runtime, engine):
    closed = runtime.scheduler.counters.turn_closing_tokens
    collect(runtime, prompt(runtime, "hi"), SamplingParams(temperature=0, stop=["fake"]))
    assert runtime.scheduler.counters.turn_closing_tokens == closed, \
        "a stop string cuts the answer, so the next prompt will not repeat its tokens"
    collect(runtime, prompt(runtime, "hi"), SamplingParams(temperature=0, max_tokens=5))
    # the last sampled token had not run yet, then <|im_end|> \n <|im_start|> u s e r \n
    assert runtime.scheduler.counters.turn_closing_tokens == closed + 1 + 8
    collect(runtime, runtime.tokenizer.tokenize("def fibonacci(n):"), SamplingParams(temperature=0))
    assert runtime.scheduler.counters.turn_closing_tokens == closed + 1 + 8, \
        "a raw completion prompt asked for no chat answer: no next turn follows it"


def test_shared_system_prompt_is_reused_across_users(runtime):
    system = ChatMessage("system", "You are a helpful assistant who answers briefly. " * 4)
    collect(runtime, runtime.chat_tokens([system, ChatMessage("user", "alpha")]))
    before = runtime.scheduler.counters.prompt_tokens_cached
    _, events = collect(runtime, runtime.chat_tokens([system, ChatMessage("user", "beta")]))
    assert events[-1].usage.cached_tokens > 200
    assert runtime.scheduler.counters.prompt_tokens_cached - before == events[-1].usage.cached_tokens


def test_evicted_conversation_is_restored_from_host_memory(engine):
    with fake_runtime(engine, parallel=1) as runtime:
        alice = [ChatMessage("user", "Alice asks about rivers, at some length. " * 3)]
        alice_answer, _ = collect(runtime, runtime.chat_tokens(alice))
        bob = [ChatMessage("user", "Bob asks something else entirely, also at length. " * 3)]
        collect(runtime, runtime.chat_tokens(bob))  # takes the only slot: Alice goes to RAM
        assert runtime.scheduler.stats()["host_cached_sequences"] == 1
        before = runtime.scheduler.counters.prompt_tokens_processed
        alice += [ChatMessage("assistant", alice_answer), ChatMessage("user", "More?")]
        _, events = collect(runtime, runtime.chat_tokens(alice))
    assert engine.restores == 1
    processed = runtime.scheduler.counters.prompt_tokens_processed - before
    assert processed < 40, f"turn 2 recomputed {processed} tokens instead of restoring turn 1"
    assert events[-1].usage.cached_tokens > 150


def test_without_prefix_reuse_every_prompt_runs_in_full(engine):
    with fake_runtime(engine, reuse_prefixes=False) as runtime:
        tokens = prompt(runtime, "same question")
        collect(runtime, tokens)
        _, events = collect(runtime, tokens)
    assert events[-1].usage.cached_tokens == 0


def test_long_prompt_is_prefilled_in_chunks_between_decode_steps(engine):
    engine.step_delay_s = 0.002
    engine.answer = lambda p: "y" * 40
    with fake_runtime(engine, parallel=2) as runtime:
        _, decoding = submit(runtime, prompt(runtime, "short"))
        wait_streaming(decoding)
        long_request, long_events = submit(runtime, prompt(runtime, "z" * 300))
        seen = wait_finished(long_events)
        wait_finished(decoding)
    progress = [e for e in seen if isinstance(e, PrefillProgress)]
    assert len(progress) >= 3, "a long prompt must arrive in several chunks"
    long_seq_batches = [b for b in engine.batches if any(len(s.tokens) > 1 for s in b)]
    assert any(any(len(s.tokens) == 1 for s in b) for b in long_seq_batches), \
        "prefill chunks must share steps with the running answer's decode"


def next_turn_while_another_answer_streams(runtime, engine, answer_length):
    """A chat whose first turn is cached (and closed), and someone else's answer streaming:
    returns the chat's next turn (tokens), the streaming answer and its events."""
    chat = [ChatMessage("user", "first question")]
    answer, _ = collect(runtime, runtime.chat_tokens(chat))
    engine.answer = lambda p: "y" * answer_length if "someone else" in p else "ok"
    request, running = submit(runtime, prompt(runtime, "someone else's answer"))
    wait_until(lambda: sum(isinstance(e, TextDelta) for e in list(running.queue)) >= 3)
    chat += [ChatMessage("assistant", answer), ChatMessage("user", "and then?")]
    return runtime.chat_tokens(chat), request, running


def test_a_new_short_turn_runs_ahead_of_the_running_answers(engine):
    engine.step_delay_s = 0.002
    with fake_runtime(engine, parallel=3) as runtime:
        next_turn_tokens, answer, running = next_turn_while_another_answer_streams(runtime, engine, 1500)
        answer_seq = answer.slot.seq_id
        engine.batches.clear()
        _, next_turn = submit(runtime, next_turn_tokens)
        wait_finished(next_turn)
        streamed = running.qsize()
        wait_until(lambda: running.qsize() > streamed)  # still streaming: it ran all along
        answer.cancel()
        wait_finished(running)
    # the turn's prompt: its slices below the prompt's end (its answer's decode lies beyond)
    turn_steps = [b for b in engine.batches
                  if any(s.seq_id != answer_seq and s.start_pos < len(next_turn_tokens) for s in b)]
    assert len(turn_steps) == 1, "the new turn's few prompt tokens run in one step"
    assert [s.seq_id != answer_seq for s in turn_steps[0]] == [True], \
        "the new turn's prefill should be a step of its own, without the running answer's token"


def test_a_new_turn_interrupts_a_step_of_the_running_answers(engine):
    engine.step_delay_s = 0.002
    with fake_runtime(engine, parallel=3) as runtime:
        next_turn_tokens, _, running = next_turn_while_another_answer_streams(runtime, engine, 20)
        engine.decode_step_extra_s = 60  # the answer's steps now end only when interrupted
        assert engine.in_decode.wait(5)
        steps_before = len(engine.batches)  # none completes while the engine waits in decode
        _, next_turn = submit(runtime, next_turn_tokens)
        wait_until(lambda: engine.interrupted_batches)
        engine.decode_step_extra_s = 0
        wait_finished(next_turn)
        running_text = "".join(e.text for e in wait_finished(running) if isinstance(e, TextDelta))
    assert running_text == "y" * 20, "the interrupted step was run again, nothing lost or repeated"
    assert runtime.scheduler.counters.steps_interrupted == len(engine.interrupted_batches) == 1
    assert [len(s.tokens) for s in engine.interrupted_batches[0]] == [1]
    next_step = engine.batches[steps_before]
    assert len(next_step) == 1 and len(next_step[0].tokens) > 1, "the new turn's prefill ran next, alone"


def test_a_long_new_prompt_does_not_interrupt_the_running_answers(engine):
    engine.step_delay_s = 0.002
    engine.answer = lambda p: "y" * 20
    with fake_runtime(engine, parallel=2) as runtime:
        _, running = submit(runtime, prompt(runtime, "someone's answer"))
        wait_until(lambda: sum(isinstance(e, TextDelta) for e in list(running.queue)) >= 3)
        engine.decode_step_extra_s = 0.05
        _, document = submit(runtime, prompt(runtime, "d" * 300))
        wait_finished(document)
        wait_finished(running)
    assert engine.interrupted_batches == []


def test_queue_overflow_is_refused(engine):
    engine.step_delay_s = 0.02
    with fake_runtime(engine, parallel=1, max_queue=1) as runtime:
        tokens = prompt(runtime, "hi")
        first, first_events = submit(runtime, tokens)
        wait_until(lambda: runtime.scheduler.stats()["running"] == 1)
        second, second_events = submit(runtime, tokens)
        with pytest.raises(QueueFull):
            submit(runtime, tokens)
        first.cancel()
        second.cancel()
        wait_finished(first_events)
        wait_finished(second_events)


@pytest.mark.parametrize("admitted_first", [False, True])
def test_queue_limit_counts_waiting_beyond_the_slots(engine, admitted_first):
    """--parallel 1 --max-queue 2: one answer runs, two wait, the rest are refused; the same
    whether the burst lands before or after the engine thread admits the first request."""
    engine.step_delay_s = 0.02
    engine.answer = lambda p: "z" * 400
    with fake_runtime(engine, parallel=1, max_queue=2) as runtime:
        tokens = prompt(runtime, "hi")
        accepted, refused = [], 0
        for number in range(8):
            try:
                accepted.append(submit(runtime, tokens))
            except QueueFull:
                refused += 1
            if admitted_first and number == 0:
                wait_until(lambda: runtime.scheduler.stats()["running"] == 1)
        assert (len(accepted), refused) == (3, 5)
        for request, _ in accepted:
            request.cancel()
        for _, events in accepted:
            wait_finished(events)
        assert submit(runtime, tokens)[0] is not None, "finished requests give their place back"


def test_max_queue_zero_means_no_waiting_not_no_service(engine):
    with fake_runtime(engine, parallel=1, max_queue=0) as runtime:
        text, _ = collect(runtime, prompt(runtime, "hi"))
        assert text == "Hello from the fake model!"


def test_cancel_with_a_reason_says_it_in_the_finish(engine):
    engine.step_delay_s = 0.01
    engine.answer = lambda p: "z" * 400
    with fake_runtime(engine, parallel=1) as runtime:
        request, events = submit(runtime, prompt(runtime, "hi"))
        wait_streaming(events)
        request.cancel(FinishReason.SHUTDOWN)
        finished = wait_finished(events)[-1]
        assert isinstance(finished, Finished) and finished.reason is FinishReason.SHUTDOWN


def test_queued_requests_learn_their_position(engine):
    engine.step_delay_s = 0.01
    with fake_runtime(engine, parallel=1) as runtime:
        tokens = prompt(runtime, "hi")
        handles = [submit(runtime, tokens) for _ in range(3)]
        positions = [[e.position for e in wait_finished(ev) if isinstance(e, Queued)] for _, ev in handles]
    assert positions[2][0] >= 1 and positions[2][-1] == 0, positions


@pytest.mark.parametrize("phase", ["queued", "prefill", "decode"])
def test_cancel_frees_everything(engine, phase):
    engine.step_delay_s = 0.01
    engine.answer = lambda p: "z" * 500
    engine.batch_capacity = 16  # a long prompt takes many steps
    samplers = []
    make_sampler = engine.new_sampler

    def recorded_sampler(params, tokens):
        samplers.append(make_sampler(params, tokens))
        return samplers[-1]

    engine.new_sampler = recorded_sampler
    with fake_runtime(engine, parallel=1) as runtime:
        blocker, blocker_events = submit(runtime, prompt(runtime, "first"))
        if phase != "queued":
            blocker.cancel()
            wait_finished(blocker_events)
        target, events = submit(runtime, prompt(runtime, "p" * 400))
        if phase == "queued":
            wait_until(lambda: runtime.scheduler.stats()["queued"] == 1)
        elif phase == "prefill":
            wait_until(lambda: any(isinstance(e, PrefillProgress) for e in list(events.queue)))
        else:
            wait_streaming(events)
        target.cancel()
        seen = wait_finished(events)
        assert isinstance(seen[-1], Finished) and seen[-1].reason is FinishReason.CANCELLED
        if phase == "queued":
            assert len(samplers) == 1, "a request cancelled while queued must never start"
            assert not any(isinstance(e, (PrefillProgress, TextDelta)) for e in seen)
            blocker.cancel()
            wait_finished(blocker_events)
        elif phase == "prefill":
            assert not any(isinstance(e, TextDelta) for e in seen), \
                "cancellation is checked every step: the prompt must not run to its end"
        else:
            assert len("".join(e.text for e in seen if isinstance(e, TextDelta))) < 500
        wait_until(lambda: runtime.scheduler.stats()["slots_in_use"] == 0)
        stats = runtime.scheduler.stats()
        assert (stats["running"], stats["queued"]) == (0, 0)
        assert all(sampler.closed for sampler in samplers), "every sampler is closed with its request"


def test_engine_failure_fails_requests_but_not_the_engine_thread(engine):
    engine.fail_on_step = 3
    with fake_runtime(engine) as runtime:
        _, events = collect(runtime, prompt(runtime, "hi"))
        assert isinstance(events[-1], Failed) and "simulated engine failure" in events[-1].message
        text, events = collect(runtime, prompt(runtime, "again"))
        assert isinstance(events[-1], Finished) and text, "the engine thread must keep serving"


def test_consumer_that_raises_loses_only_its_request(runtime):
    def broken_sink(event):
        raise RuntimeError("event loop closed")

    request = runtime.submit(prompt(runtime, "a"), GREEDY, broken_sink)
    wait_until(lambda: request.cancelled)
    text, _ = collect(runtime, prompt(runtime, "b"))
    assert text == "Hello from the fake model!"


def test_prompt_plus_max_tokens_beyond_context_is_refused(runtime):
    tokens = prompt(runtime, "x" * 2000)
    with pytest.raises(ContextOverflow) as error:
        runtime.submit(tokens, SamplingParams(max_tokens=100), lambda e: None)
    assert error.value.prompt_tokens == len(tokens) and error.value.context_size == 2048


def test_answer_stops_at_the_context_window(engine):
    engine.answer = lambda p: "w" * 5000
    with fake_runtime(engine) as runtime:
        tokens = prompt(runtime, "x" * 1900)
        text, events = collect(runtime, tokens)
    assert events[-1].reason is FinishReason.LENGTH
    assert len(tokens) + len(text) <= engine.ctx_size


def test_stress_random_cancellations_leave_no_sequence_behind(engine):
    import random

    rng = random.Random(7)
    engine.step_delay_s = 0.001
    engine.answer = lambda p: "r" * rng.randint(1, 80)
    with fake_runtime(engine, parallel=4, max_queue=64) as runtime:
        handles = []
        for i in range(40):
            request, events = submit(runtime, prompt(runtime, f"q{i} " * rng.randint(1, 30)))
            handles.append((request, events))
            if rng.random() < 0.3:
                threading.Timer(rng.random() * 0.05, request.cancel).start()
        for _, events in handles:
            assert isinstance(wait_finished(events, timeout=30)[-1], (Finished, Failed))
        # a finished answer's slot is freed one small step later (see test_turn_closing...)
        wait_until(lambda: runtime.scheduler.stats()["idle_slots"] == engine.n_sequences)
        stats = runtime.scheduler.stats()
    assert stats["running"] == 0 and stats["queued"] == 0


def test_a_sampler_that_fails_loses_only_its_request(engine):
    class BrokenSampler:
        def sample(self, batch_index):
            raise RuntimeError("the output grammar allows no token here")

        def close(self):
            pass

    make_sampler = engine.new_sampler
    engine.new_sampler = lambda params, tokens: (
        BrokenSampler() if params.max_tokens == 7 else make_sampler(params, tokens))
    with fake_runtime(engine) as runtime:
        _, healthy = submit(runtime, prompt(runtime, "a"))
        _, broken = submit(runtime, prompt(runtime, "b"), SamplingParams(temperature=0, max_tokens=7))
        failed = wait_finished(broken)[-1]
        assert isinstance(failed, Failed) and "allows no token" in failed.message
        assert isinstance(wait_finished(healthy)[-1], Finished)
        wait_until(lambda: runtime.scheduler.stats()["slots_in_use"] == 0)
