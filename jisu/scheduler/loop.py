"""The engine thread: continuous batching with chunked prefill and prefix reuse.

Only this thread calls the engine. Each step it
  1. drops cancelled requests (queued or running) and frees their slots,
  2. admits waiting requests while a slot is idle, each into the slot (or saved copy) that
     already holds the longest part of its prompt,
  3. plans one batch: the next token of every decoding request, plus as much prompt
     prefill as fits in the step's time budget, so people receiving answers keep receiving
     them while someone pastes a long document (see batch_plan.py),
  4. runs one `llama_decode`, samples, and hands each request its new text.

Someone sending the next message of a chat should not wait for a step that only serves
others: such a message interrupts a step of running answers, runs first, and the
interrupted step is simply run again (see Scheduler.submit). And it should find as much of
its prompt computed as can be known: when an answer ends, the closing of its turn goes into
its KV at once (see turns.py).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from jisu.config import DEFAULT_HOST_CACHE_MB, DEFAULT_MAX_QUEUE
from jisu.engine.protocol import BatchSlice, ScoredToken, StepInterrupted
from jisu.engine.text_assembler import ScoredTextAssembler, TextAssembler
from jisu.scheduler.batch_plan import could_start_as_new_turn, plan_step
from jisu.scheduler.pacing import StepPacer
from jisu.scheduler.prefix_cache import HostCache, PromptEnd
from jisu.scheduler.request import Phase, Request
from jisu.scheduler.slots import SlotTable
from jisu.scheduler.turns import NO_TURN_MARKERS, AnswerEnd, ChatTurns
from jisu.types import (
    ContextOverflow,
    Failed,
    Finished,
    FinishReason,
    InvalidRequest,
    PrefillProgress,
    Queued,
    QueueFull,
    SchedulerClosed,
    TextDelta,
)

log = logging.getLogger(__name__)
ENGINE_THREAD_NAME = "jisu-engine"
PR_SET_NAME = 15


def name_os_thread(name: str) -> None:
    """Give the calling thread an OS-level name (Linux), so top, py-spy and the benchmarks
    can tell the engine's CPU time from the HTTP side's. llama.cpp's compute threads, started
    from this thread, inherit it."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (AttributeError, OSError):
        pass


@dataclass
class Counters:
    """Running totals, read by /metrics and by tests (prompt reuse is asserted on these)."""

    prompt_tokens_processed: int = 0  # prompt tokens that went through the model
    prompt_tokens_cached: int = 0  # prompt tokens whose KV was reused
    completion_tokens: int = 0
    steps: int = 0
    steps_interrupted: int = 0  # steps of running answers cut short by a new chat turn
    turn_closing_tokens: int = 0  # run ahead of a conversation's next turn (see turns.py)


class Scheduler:
    def __init__(
        self,
        engine,
        max_queue: int = DEFAULT_MAX_QUEUE,
        host_cache_bytes: int = DEFAULT_HOST_CACHE_MB * 10**6,
        reuse_prefixes: bool = True,
        chat_turns: ChatTurns = NO_TURN_MARKERS,
    ) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self.counters = Counters()
        self._tokenizer = engine.tokenizer
        self._slots = SlotTable(engine, HostCache(host_cache_bytes), reuse_prefixes)
        self._waiting: deque[Request] = deque()
        self._running: list[Request] = []
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._closing = False
        self._unfinished = 0  # submitted and not yet done: what admission counts
        self._pacer = StepPacer()
        self._interruptible_step_running = False
        self._chat_turns = chat_turns if reuse_prefixes else NO_TURN_MARKERS
        self._turns_to_close: list[tuple[Request, list[int]]] = []
        self._warmed_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name=ENGINE_THREAD_NAME, daemon=True)
        self._thread.start()
        self._warmed_up.wait()  # ready only once the first request would not pay for it
        # A program that ends without close() must not tear llama.cpp down under a running
        # step (one always follows an answer's end: see _close_turns): that crashes.
        atexit.register(self.close)

    # ---- called from any thread --------------------------------------------------------

    def submit(self, request: Request) -> Request:
        self.check_fits(len(request.prompt_tokens), request.sampling.max_tokens)
        with self._lock:
            if self._closing:
                raise SchedulerClosed("the engine is shutting down")
            # Everyone beyond the slots waits; --max-queue is how many may. Counted over
            # requests not yet done, so a free slot always takes a request (even with
            # --max-queue 0) and a burst is judged the same whether or not the engine
            # thread has admitted its first requests yet.
            if self._unfinished >= len(self._slots.slots) + self.max_queue:
                raise QueueFull(len(self._waiting))
            self._unfinished += 1
            self._waiting.append(request)
            self._wakeup.notify()
            if self._interruptible_step_running and could_start_as_new_turn(
                    self._slots.new_tokens_hint(request.prompt_tokens, request.cache_owner)):
                # The step only serves answers already streaming, and deep in long
                # conversations such a step is long enough to matter to someone waiting
                # for a first token. Stopping it lets this turn start now, at the cost of
                # that step's work, which is redone right after.
                self.engine.interrupt()
        return request

    def check_fits(self, prompt_tokens: int, max_tokens: int | None) -> None:
        """Raise ContextOverflow unless the prompt (and max_tokens) fit one conversation."""
        if prompt_tokens == 0:
            raise InvalidRequest("the prompt is empty", "prompt")
        wanted = prompt_tokens + (max_tokens or 1)
        if wanted > self.engine.ctx_size:
            raise ContextOverflow(prompt_tokens, max_tokens, self.engine.ctx_size)

    def stats(self) -> dict[str, int]:
        with self._lock:
            idle_slots = len(self._slots.idle())
            return {
                "running": len(self._running),
                "queued": len(self._waiting),
                "idle_slots": idle_slots,
                "slots_in_use": len(self._slots.slots) - idle_slots,
                "host_cached_sequences": len(self._slots.host_cache),
                "host_cache_bytes": self._slots.host_cache.total_bytes,
            }

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closing

    def close(self) -> None:
        atexit.unregister(self.close)
        with self._lock:
            self._closing = True
            self._wakeup.notify()
        self._thread.join(timeout=30)

    # ---- the engine thread ---------------------------------------------------------------

    def _run(self) -> None:
        name_os_thread(ENGINE_THREAD_NAME)
        try:
            self.engine.warm_up()  # here, on the thread that runs every step (see warm_up)
        except Exception:  # only a speed-up is lost
            log.exception("could not warm the model up")
        finally:
            self._warmed_up.set()
        while True:
            with self._lock:
                while not self._closing and not self._waiting and not self._running:
                    self._wakeup.wait()
                if self._closing:
                    break
            try:
                self._reap_cancelled()
                self._admit()
                if len(self._running) > 1:
                    self._slots.compact()
                if self._running:
                    self._step()
            except Exception as error:  # never let one bad step kill the engine thread
                log.exception("engine step failed")
                self._fail_all_running(f"engine error: {error}")
            if self._turns_to_close:
                self._close_turns()
        self._shutdown()

    def _reap_cancelled(self) -> None:
        with self._lock:
            cancelled = [r for r in self._waiting if r.cancelled]
            for request in cancelled:
                self._waiting.remove(request)
        for request in cancelled + [r for r in self._running if r.cancelled]:
            self._finish(request, request.cancel_reason)
            self._release(request, request.tokens_in_kv)  # a queued one holds no slot yet

    def _admit(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    break
                request = self._waiting[0]
            acquired = self._slots.acquire(request.prompt_tokens, request.cache_owner)
            if acquired is None:
                break  # every slot is busy: wait for one to finish
            with self._lock:
                self._waiting.popleft()
            slot, reuse, prompt_end_logits = acquired
            request.slot = slot
            request.n_past = request.cached_tokens = reuse
            self.counters.prompt_tokens_cached += reuse
            try:
                request.sampler = self.engine.new_sampler(request.sampling, request.prompt_tokens)
            except Exception as error:
                self._slots.release(slot, None)
                self._retire(request)
                request.emit(Failed(f"could not start generation: {error}"))
                continue
            assembler = ScoredTextAssembler if request.sampling.logprobs else TextAssembler
            request.text_assembler = assembler(request.sampling.stop)
            request.phase = Phase.PREFILL
            request.started_at = time.perf_counter()
            self._running.append(request)
            if prompt_end_logits is not None:  # this very prompt ran before: answer at once
                self._start_answer(request, prompt_end_logits)
        self._announce_queue_positions()

    def _retire(self, request: Request) -> None:
        """Mark a request done; it no longer counts against the queue limit."""
        request.phase = Phase.DONE
        with self._lock:
            self._unfinished -= 1

    def _announce_queue_positions(self) -> None:
        with self._lock:
            waiting = list(self._waiting)
        for position, request in enumerate(waiting):
            if request.queue_position != position:
                request.queue_position = position
                request.emit(Queued(position))

    def _step(self) -> None:
        plan = plan_step(self._running, self.engine.batch_capacity, self._pacer.prefill_budget)
        with self._lock:
            if plan.interruptible and self._waiting and self._slots.idle():
                return  # arrived since _admit: admit it before starting a step it would interrupt
            self.engine.clear_interrupt()
            self._interruptible_step_running = plan.interruptible
        started = time.perf_counter()
        try:
            logit_rows = self.engine.decode(plan.slices)
        except StepInterrupted:
            self.counters.steps_interrupted += 1
            return
        finally:
            with self._lock:
                self._interruptible_step_running = False
        self._pacer.record(plan.n_decoding, plan.n_prefill, time.perf_counter() - started)
        self.counters.steps += 1

        for request, piece, logits_row in zip(plan.owners, plan.slices, logit_rows):
            request.n_past += len(piece.tokens)
            if request.phase is Phase.DECODE:
                self._sample(request, logits_row)
                continue
            self.counters.prompt_tokens_processed += len(piece.tokens)
            if request.prompt_remaining > 0:
                request.emit(PrefillProgress(request.n_past, len(request.prompt_tokens)))
            elif self._slots.reuse_prefixes:  # kept with the KV for the same prompt sent again
                self._start_answer(request, self.engine.copy_logits(logits_row))
            else:
                request.phase = Phase.DECODE
                self._sample(request, logits_row)

    def _start_answer(self, request: Request, prompt_end_logits) -> None:
        """The prompt is in the KV: pick the first token from the logits it ended with."""
        request.prompt_end = PromptEnd(len(request.prompt_tokens), prompt_end_logits)
        request.phase = Phase.DECODE
        self._sample(request, prompt_end_logits)

    def _sample(self, request: Request, logits) -> None:
        scored = None
        try:
            if request.sampling.logprobs:
                scored = request.sampler.sample_with_logprobs(logits, request.sampling.top_logprobs)
                token = scored.token
            else:
                token = request.sampler.sample(logits)
        except Exception as error:  # e.g. a grammar with no way on: this request only
            log.exception("sampling failed for request %s", request.id)
            self._fail(request, f"could not pick the next token: {error}")
            return
        self._accept(request, token, scored)

    def _accept(self, request: Request, token: int, scored: ScoredToken | None = None) -> None:
        if not request.first_token_at:
            request.first_token_at = time.perf_counter()
        if self._tokenizer.is_end_of_generation(token):  # ignore_eos: the sampler never picks one
            self._end_answer(request, AnswerEnd.END_OF_TURN)
            return
        request.generated.append(token)
        request.next_token = token
        self.counters.completion_tokens += 1
        piece = self._tokenizer.piece(token)
        text = request.text_assembler.feed(piece) if scored is None else self._feed_scored(request, piece, scored)
        if text:
            request.emit(TextDelta(text, [token], request.text_assembler.take_logprobs()))
        if request.text_assembler.stopped:
            self._end_answer(request, AnswerEnd.STOP_STRING)
        elif request.sampling.max_tokens and len(request.generated) >= request.sampling.max_tokens:
            self._end_answer(request, AnswerEnd.MAX_TOKENS)
        elif request.n_past + 1 >= self.engine.ctx_size:
            self._end_answer(request, AnswerEnd.CONTEXT_FULL)

    def _feed_scored(self, request: Request, piece: bytes, scored: ScoredToken) -> str:
        # Alternatives render control tokens as their markers: an end of turn the model
        # considered reads "<|im_end|>", not an empty string.
        top = [(self._tokenizer.piece(token, special=True), logprob) for token, logprob in scored.top]
        return request.text_assembler.feed_scored(piece, scored.logprob, top)

    def _end_answer(self, request: Request, end: AnswerEnd) -> None:
        """A running answer ended on its own: its slot is freed now, or after the closing
        of its turn has run (see _close_turns)."""
        self._finish(request, end.finish_reason)
        closing = self._chat_turns.tokens_to_close(request, end, self.engine.ctx_size)
        if closing:
            self._turns_to_close.append((request, closing))  # keeps its slot until then
        else:
            self._release(request, request.tokens_in_kv)

    def _finish(self, request: Request, reason: FinishReason) -> None:
        """Send a request's last text and its Finished event; it stops counting against the
        queue. Its slot, if it has one, is the caller's to free."""
        if request.phase is Phase.DONE:
            return
        if request.phase is not Phase.WAITING:
            self._running.remove(request)
        self._retire(request)
        if request.text_assembler is not None:
            tail = request.text_assembler.finish()
            if tail:
                request.emit(TextDelta(tail, [], request.text_assembler.take_logprobs()))
        request.emit(Finished(reason, request.usage(), request.timings(time.perf_counter())))

    def _close_turns(self) -> None:
        """One small step right after the answers ended, before anyone is admitted: their
        conversations' next turns (sent once the client has the answer) find their slots
        free and holding the closing."""
        closing, self._turns_to_close = self._turns_to_close, []
        slices = [BatchSlice(r.slot.seq_id, tokens, r.n_past, False) for r, tokens in closing]
        with self._lock:
            self.engine.clear_interrupt()  # a late interrupt meant for the step before
        try:
            self.engine.decode(slices)
        except Exception:  # only a speed-up was lost: keep what the KV held before
            log.exception("could not run the closing of finished turns")
            for request, _ in closing:
                self._release(request, request.tokens_in_kv)
            return
        self.counters.turn_closing_tokens += sum(len(tokens) for _, tokens in closing)
        for request, tokens in closing:
            self._release(request, request.tokens_in_kv + tokens)

    def _release(self, request: Request, kv_tokens: list[int] | None) -> None:
        """Give the request's slot back; its KV (holding `kv_tokens`, or None when it cannot
        be trusted) stays for the conversation's next turn."""
        if request.sampler is not None:
            request.sampler.close()
            request.sampler = None
        slot, request.slot = request.slot, None
        if slot is not None:
            self._slots.release(slot, kv_tokens, request.prompt_end)

    def _fail_all_running(self, message: str) -> None:
        for request in list(self._running):
            self._fail(request, message)

    def _fail(self, request: Request, message: str) -> None:
        self._running.remove(request)
        self._retire(request)
        request.emit(Failed(message))
        try:
            self._release(request, None)
        except Exception:
            log.exception("could not free the slot of request %s", request.id)

    def _shutdown(self) -> None:
        with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
        for request in waiting + self._running:
            self._retire(request)
            request.emit(Failed("the server is shutting down", "server_shutdown"))
        self._running.clear()

