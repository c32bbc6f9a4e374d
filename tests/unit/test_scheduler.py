"""Scheduling logic on the fake engine: batching, prefix reuse, queueing, cancellation."""

from __future__ import annotations

import queue
import threading

import pytest

from fakes import FakeEngine, fake_scheduler
from streams import wait_until
from jisu.engine.template import render_chat
from jisu.scheduler.request import Request
from jisu.types import (
    ChatMessage,
    ContextOverflow,
    Failed,
    Finished,
    FinishReason,
    PrefillProgress,
    Queued,
    QueueFull,
    SamplingParams,
    TextDelta,
)

GREEDY = SamplingParams(temperature=0)


def collect(scheduler, tokens, sampling=GREEDY):
    """Run one request to its end: its text and all its events."""
    _, events = submit(scheduler, tokens, sampling)
    seen = wait_finished(events)
    return "".join(e.text for e in seen if isinstance(e, TextDelta)), seen


def submit(scheduler, tokens, sampling=GREEDY):
    events: queue.Queue = queue.Queue()
    request = scheduler.submit(Request(tokens, sampling, events.put))
    return request, events


def chat_tokens(scheduler, messages) -> list[int]:
    return scheduler.engine.tokenizer.tokenize_segments(render_chat(messages))


def wait_finished(events: queue.Queue, timeout: float = 10) -> list:
    seen = []
    while True:
        event = events.get(timeout=timeout)
        seen.append(event)
        if isinstance(event, (Finished, Failed)):
            return seen


def wait_streaming(events: queue.Queue) -> None:
    """Until the request has sent its first text (events stay in the queue for the test)."""
    wait_until(lambda: any(isinstance(e, TextDelta) for e in list(events.queue)), "the answer streams")


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def scheduler(engine):
    with fake_scheduler(engine) as scheduler:
        yield scheduler


def prompt(scheduler, text: str) -> list[int]:
    return chat_tokens(scheduler, [ChatMessage("user", text)])


def test_the_model_is_warmed_up_on_the_engine_thread_before_the_scheduler_is_ready(engine):
    # llama.cpp's compute on a second thread (the loading one) halves the decode rate: the
    # warm-up must run where every step runs, and be over when the scheduler is handed out.
    with fake_scheduler(engine):
        assert engine.warmed_up_on == "jisu-engine"


def test_answer_streams_and_finishes_with_usage(scheduler):
    tokens = prompt(scheduler, "hi")
    request, events = submit(scheduler, tokens)
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
    with fake_scheduler(engine, parallel=3) as scheduler:
        handles = [submit(scheduler, prompt(scheduler, f"question {i}")) for i in range(3)]
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

    with fake_scheduler(engine, parallel=2) as scheduler:
        long_answer = scheduler.submit(Request(prompt(scheduler, "long"), GREEDY, lambda e: seen.append(("long", e))))
        wait_until(lambda: any(isinstance(e, TextDelta) for e in events_of("long")), "the long answer streams")
        scheduler.submit(Request(prompt(scheduler, "short"), GREEDY, lambda e: seen.append(("short", e))))
        wait_until(streamed_after_short_finished, "the long answer streamed on after the short one ended")  # the long answer still streaming after it
        long_answer.cancel()
        wait_until(lambda: any(isinstance(e, Finished) for e in events_of("long")), "the long answer ended")
    assert "".join(e.text for e in events_of("short") if isinstance(e, TextDelta)) == "xxx"


def test_max_tokens_and_stop_strings(scheduler):
    text, events = collect(scheduler, prompt(scheduler, "hi"), SamplingParams(temperature=0, max_tokens=5))
    assert text == "Hello" and events[-1].reason is FinishReason.LENGTH
    text, events = collect(scheduler, prompt(scheduler, "hi"), SamplingParams(temperature=0, stop=["fake"]))
    assert text == "Hello from the " and events[-1].reason is FinishReason.STOP


def test_next_turn_reuses_the_cached_conversation(scheduler, engine):
    first_messages = [ChatMessage("user", "first question")]
    first = render_chat(first_messages)
    answer, _ = collect(scheduler, scheduler.engine.tokenizer.tokenize_segments(first))
    counters = scheduler.counters
    before = counters.prompt_tokens_processed
    second_messages = first_messages + [ChatMessage("assistant", answer), ChatMessage("user", "and then?")]
    second = chat_tokens(scheduler, second_messages)
    _, events = collect(scheduler, second)
    processed = counters.prompt_tokens_processed - before
    closing = scheduler.engine.tokenizer.tokenize("<|im_end|>\n<|im_start|>user\n", special=True)
    new_words = scheduler.engine.tokenizer.tokenize("and then?<|im_end|>\n<|im_start|>assistant\n", special=True)
    assert counters.turn_closing_tokens >= len(closing), "turn 1's answer was closed as soon as it ended"
    assert processed == len(new_words), "turn 2 must only process what turn 1 did not already hold"
    assert events[-1].usage.cached_tokens == len(second) - len(new_words)


def test_turn_closing_is_only_run_after_whole_chat_answers(scheduler, engine):
    closed = scheduler.counters.turn_closing_tokens
    collect(scheduler, prompt(scheduler, "hi"), SamplingParams(temperature=0, stop=["fake"]))
    assert scheduler.counters.turn_closing_tokens == closed, \
        "a stop string cuts the answer, so the next prompt will not repeat its tokens"
    collect(scheduler, prompt(scheduler, "hi"), SamplingParams(temperature=0, max_tokens=5))
    # the last sampled token had not run yet, then <|im_end|> \n <|im_start|> u s e r \n
    assert scheduler.counters.turn_closing_tokens == closed + 1 + 8
    collect(scheduler, scheduler.engine.tokenizer.tokenize("def fibonacci(n):"), SamplingParams(temperature=0))
    assert scheduler.counters.turn_closing_tokens == closed + 1 + 8, \
        "a raw completion prompt asked for no chat answer: no next turn follows it"


def test_shared_system_prompt_is_reused_across_users(scheduler):
    system = ChatMessage("system", "You are a helpful assistant who answers briefly. " * 4)
    collect(scheduler, chat_tokens(scheduler, [system, ChatMessage("user", "alpha")]))
    before = scheduler.counters.prompt_tokens_cached
    _, events = collect(scheduler, chat_tokens(scheduler, [system, ChatMessage("user", "beta")]))
    assert events[-1].usage.cached_tokens > 200
    assert scheduler.counters.prompt_tokens_cached - before == events[-1].usage.cached_tokens


def test_evicted_conversation_is_restored_from_host_memory(engine):
    with fake_scheduler(engine, parallel=1) as scheduler:
        alice = [ChatMessage("user", "Alice asks about rivers, at some length. " * 3)]
        alice_answer, _ = collect(scheduler, chat_tokens(scheduler, alice))
        bob = [ChatMessage("user", "Bob asks something else entirely, also at length. " * 3)]
        collect(scheduler, chat_tokens(scheduler, bob))  # takes the only slot: Alice goes to RAM
        assert scheduler.stats()["host_cached_sequences"] == 1
        before = scheduler.counters.prompt_tokens_processed
        alice += [ChatMessage("assistant", alice_answer), ChatMessage("user", "More?")]
        _, events = collect(scheduler, chat_tokens(scheduler, alice))
    assert engine.restores == 1
    processed = scheduler.counters.prompt_tokens_processed - before
    assert processed < 40, f"turn 2 recomputed {processed} tokens instead of restoring turn 1"
    assert events[-1].usage.cached_tokens > 150


def test_the_same_prompt_sent_again_answers_without_running_the_model_first(scheduler, engine):
    tokens = prompt(scheduler, "regenerate me")
    first, _ = collect(scheduler, tokens)
    steps, processed = len(engine.batches), scheduler.counters.prompt_tokens_processed
    again, events = collect(scheduler, tokens)
    assert again == first
    assert events[-1].usage.cached_tokens == len(tokens), "all of it was in the KV, its logits too"
    assert scheduler.counters.prompt_tokens_processed == processed
    first_step = engine.batches[steps]
    assert all(len(piece.tokens) == 1 for piece in first_step), \
        "its first token came from the kept logits: the next step already decodes it"


def test_kept_prompt_logits_travel_with_the_kv_through_host_memory(engine):
    with fake_scheduler(engine, parallel=1) as scheduler:
        alice = chat_tokens(scheduler, [ChatMessage("user", "Alice asks about rivers, at some length. " * 3)])
        collect(scheduler, alice)
        collect(scheduler, prompt(scheduler, "Bob takes the only slot, and at length too. " * 3))
        processed = scheduler.counters.prompt_tokens_processed
        _, events = collect(scheduler, alice)
    assert engine.restores == 1
    assert events[-1].usage.cached_tokens == len(alice)
    assert scheduler.counters.prompt_tokens_processed == processed


def test_a_shorter_prompt_inside_the_kv_still_runs_its_last_token(scheduler, engine):
    tokens = scheduler.engine.tokenizer.tokenize("a raw completion prompt, then more of it")
    collect(scheduler, tokens)
    shorter = tokens[:-8]  # held by the KV, but no logits were kept for where it ends
    _, events = collect(scheduler, shorter)
    assert events[-1].usage.cached_tokens == len(shorter) - 1


def test_a_prompt_cut_short_by_a_cancel_keeps_no_logits(engine):
    engine.step_delay_s = 0.01
    with fake_scheduler(engine, parallel=1) as scheduler:
        engine.batch_capacity = 8  # the prompt takes several steps
        tokens = prompt(scheduler, "a prompt that takes a few steps to read")
        request, events = submit(scheduler, tokens)
        wait_until(lambda: engine.batches, "the prompt is being read")
        request.cancel()
        wait_finished(events)
        engine.step_delay_s = 0
        _, events = collect(scheduler, tokens)
    assert events[-1].usage.cached_tokens < len(tokens)


def test_without_prefix_reuse_every_prompt_runs_in_full(engine):
    with fake_scheduler(engine, reuse_prefixes=False) as scheduler:
        tokens = prompt(scheduler, "same question")
        collect(scheduler, tokens)
        _, events = collect(scheduler, tokens)
    assert events[-1].usage.cached_tokens == 0


def test_long_prompt_is_prefilled_in_chunks_between_decode_steps(engine):
    engine.step_delay_s = 0.002
    engine.answer = lambda p: "y" * 40
    with fake_scheduler(engine, parallel=2) as scheduler:
        _, decoding = submit(scheduler, prompt(scheduler, "short"))
        wait_streaming(decoding)
        long_request, long_events = submit(scheduler, prompt(scheduler, "z" * 300))
        seen = wait_finished(long_events)
        wait_finished(decoding)
    progress = [e for e in seen if isinstance(e, PrefillProgress)]
    assert len(progress) >= 3, "a long prompt must arrive in several chunks"
    long_seq_batches = [b for b in engine.batches if any(len(s.tokens) > 1 for s in b)]
    assert any(any(len(s.tokens) == 1 for s in b) for b in long_seq_batches), \
        "prefill chunks must share steps with the running answer's decode"


def next_turn_while_another_answer_streams(scheduler, engine, answer_length):
    """A chat whose first turn is cached (and closed), and someone else's answer streaming:
    returns the chat's next turn (tokens), the streaming answer and its events."""
    chat = [ChatMessage("user", "first question")]
    answer, _ = collect(scheduler, chat_tokens(scheduler, chat))
    engine.answer = lambda p: "y" * answer_length if "someone else" in p else "ok"
    request, running = submit(scheduler, prompt(scheduler, "someone else's answer"))
    wait_until(lambda: sum(isinstance(e, TextDelta) for e in list(running.queue)) >= 3, "the other answer streams")
    chat += [ChatMessage("assistant", answer), ChatMessage("user", "and then?")]
    return chat_tokens(scheduler, chat), request, running


def test_a_new_short_turn_runs_ahead_of_the_running_answers(engine):
    engine.step_delay_s = 0.002
    with fake_scheduler(engine, parallel=3) as scheduler:
        next_turn_tokens, answer, running = next_turn_while_another_answer_streams(scheduler, engine, 1500)
        answer_seq = answer.slot.seq_id
        engine.batches.clear()
        _, next_turn = submit(scheduler, next_turn_tokens)
        wait_finished(next_turn)
        streamed = running.qsize()
        wait_until(lambda: running.qsize() > streamed, "the other answer streamed on")  # still streaming: it ran all along
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
    with fake_scheduler(engine, parallel=3) as scheduler:
        next_turn_tokens, _, running = next_turn_while_another_answer_streams(scheduler, engine, 20)
        engine.decode_step_extra_s = 60  # the answer's steps now end only when interrupted
        assert engine.in_decode.wait(5)
        steps_before = len(engine.batches)  # none completes while the engine waits in decode
        _, next_turn = submit(scheduler, next_turn_tokens)
        wait_until(lambda: engine.interrupted_batches, "a step was interrupted")
        engine.decode_step_extra_s = 0
        wait_finished(next_turn)
        running_text = "".join(e.text for e in wait_finished(running) if isinstance(e, TextDelta))
    assert running_text == "y" * 20, "the interrupted step was run again, nothing lost or repeated"
    assert scheduler.counters.steps_interrupted == len(engine.interrupted_batches) == 1
    assert [len(s.tokens) for s in engine.interrupted_batches[0]] == [1]
    next_step = engine.batches[steps_before]
    assert len(next_step) == 1 and len(next_step[0].tokens) > 1, "the new turn's prefill ran next, alone"


def test_a_long_new_prompt_does_not_interrupt_the_running_answers(engine):
    engine.step_delay_s = 0.002
    engine.answer = lambda p: "y" * 20
    with fake_scheduler(engine, parallel=2) as scheduler:
        _, running = submit(scheduler, prompt(scheduler, "someone's answer"))
        wait_until(lambda: sum(isinstance(e, TextDelta) for e in list(running.queue)) >= 3, "the other answer streams")
        engine.decode_step_extra_s = 0.05
        _, document = submit(scheduler, prompt(scheduler, "d" * 300))
        wait_finished(document)
        wait_finished(running)
    assert engine.interrupted_batches == []


def test_queue_overflow_is_refused(engine):
    engine.step_delay_s = 0.02
    with fake_scheduler(engine, parallel=1, max_queue=1) as scheduler:
        tokens = prompt(scheduler, "hi")
        first, first_events = submit(scheduler, tokens)
        wait_until(lambda: scheduler.stats()["running"] == 1, "one request runs")
        second, second_events = submit(scheduler, tokens)
        with pytest.raises(QueueFull):
            submit(scheduler, tokens)
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
    with fake_scheduler(engine, parallel=1, max_queue=2) as scheduler:
        tokens = prompt(scheduler, "hi")
        accepted, refused = [], 0
        for number in range(8):
            try:
                accepted.append(submit(scheduler, tokens))
            except QueueFull:
                refused += 1
            if admitted_first and number == 0:
                wait_until(lambda: scheduler.stats()["running"] == 1, "one request runs")
        assert (len(accepted), refused) == (3, 5)
        for request, _ in accepted:
            request.cancel()
        for _, events in accepted:
            wait_finished(events)
        assert submit(scheduler, tokens)[0] is not None, "finished requests give their place back"


def test_max_queue_zero_means_no_waiting_not_no_service(engine):
    with fake_scheduler(engine, parallel=1, max_queue=0) as scheduler:
        text, _ = collect(scheduler, prompt(scheduler, "hi"))
        assert text == "Hello from the fake model!"


def test_cancel_with_a_reason_says_it_in_the_finish(engine):
    engine.step_delay_s = 0.01
    engine.answer = lambda p: "z" * 400
    with fake_scheduler(engine, parallel=1) as scheduler:
        request, events = submit(scheduler, prompt(scheduler, "hi"))
        wait_streaming(events)
        request.cancel(FinishReason.SHUTDOWN)
        finished = wait_finished(events)[-1]
        assert isinstance(finished, Finished) and finished.reason is FinishReason.SHUTDOWN


def test_queued_requests_learn_their_position(engine):
    engine.step_delay_s = 0.01
    with fake_scheduler(engine, parallel=1) as scheduler:
        tokens = prompt(scheduler, "hi")
        handles = [submit(scheduler, tokens) for _ in range(3)]
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
    with fake_scheduler(engine, parallel=1) as scheduler:
        blocker, blocker_events = submit(scheduler, prompt(scheduler, "first"))
        if phase != "queued":
            blocker.cancel()
            wait_finished(blocker_events)
        target, events = submit(scheduler, prompt(scheduler, "p" * 400))
        if phase == "queued":
            wait_until(lambda: scheduler.stats()["queued"] == 1, "one request waits")
        elif phase == "prefill":
            wait_until(lambda: any(isinstance(e, PrefillProgress) for e in list(events.queue)), "the prompt is being read")
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
        wait_until(lambda: scheduler.stats()["slots_in_use"] == 0, "every slot is free")
        stats = scheduler.stats()
        assert (stats["running"], stats["queued"]) == (0, 0)
        assert all(sampler.closed for sampler in samplers), "every sampler is closed with its request"


def test_engine_failure_fails_requests_but_not_the_engine_thread(engine):
    engine.fail_on_step = 3
    with fake_scheduler(engine) as scheduler:
        _, events = collect(scheduler, prompt(scheduler, "hi"))
        assert isinstance(events[-1], Failed) and "simulated engine failure" in events[-1].message
        text, events = collect(scheduler, prompt(scheduler, "again"))
        assert isinstance(events[-1], Finished) and text, "the engine thread must keep serving"


def test_consumer_that_raises_loses_only_its_request(scheduler):
    def broken_sink(event):
        raise RuntimeError("event loop closed")

    request = scheduler.submit(Request(prompt(scheduler, "a"), GREEDY, broken_sink))
    wait_until(lambda: request.cancelled, "the request was cancelled")
    text, _ = collect(scheduler, prompt(scheduler, "b"))
    assert text == "Hello from the fake model!"


def test_prompt_plus_max_tokens_beyond_context_is_refused(scheduler):
    tokens = prompt(scheduler, "x" * 2000)
    with pytest.raises(ContextOverflow) as error:
        scheduler.submit(Request(tokens, SamplingParams(max_tokens=100), lambda e: None))
    assert error.value.prompt_tokens == len(tokens) and error.value.context_size == 2048


def test_answer_stops_at_the_context_window(engine):
    engine.answer = lambda p: "w" * 5000
    with fake_scheduler(engine) as scheduler:
        tokens = prompt(scheduler, "x" * 1900)
        text, events = collect(scheduler, tokens)
    assert events[-1].reason is FinishReason.LENGTH
    assert len(tokens) + len(text) <= engine.ctx_size


def test_stress_random_cancellations_leave_no_sequence_behind(engine):
    import random

    rng = random.Random(7)
    engine.step_delay_s = 0.001
    engine.answer = lambda p: "r" * rng.randint(1, 80)
    with fake_scheduler(engine, parallel=4, max_queue=64) as scheduler:
        handles = []
        for i in range(40):
            request, events = submit(scheduler, prompt(scheduler, f"q{i} " * rng.randint(1, 30)))
            handles.append((request, events))
            if rng.random() < 0.3:
                threading.Timer(rng.random() * 0.05, request.cancel).start()
        for _, events in handles:
            assert isinstance(wait_finished(events, timeout=30)[-1], (Finished, Failed))
        # a finished answer's slot is freed one small step later (see test_turn_closing...)
        wait_until(lambda: scheduler.stats()["idle_slots"] == engine.n_sequences, "every slot is idle")
        stats = scheduler.stats()
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
    with fake_scheduler(engine) as scheduler:
        _, healthy = submit(scheduler, prompt(scheduler, "a"))
        _, broken = submit(scheduler, prompt(scheduler, "b"), SamplingParams(temperature=0, max_tokens=7))
        failed = wait_finished(broken)[-1]
        assert isinstance(failed, Failed) and "allows no token" in failed.message
        assert isinstance(wait_finished(healthy)[-1], Finished)
        wait_until(lambda: scheduler.stats()["slots_in_use"] == 0, "every slot is free")
