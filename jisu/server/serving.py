"""From an OpenAI request to engine events and back: shared by the HTTP and WebSocket routes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from jisu.scheduler.request import Request
from jisu.runtime import Runtime
from jisu.scheduler.loop import SchedulerClosed
from jisu.server.errors import ApiError, answer_cut_by_shutdown, as_api_error
from jisu.server.metrics import Metrics
from jisu.server.protocol import ChatCompletionRequest, CompletionRequest
from jisu.structured.plan import plan_output
from jisu.structured.response_format import with_schema_instruction
from jisu.types import (
    ChatMessage,
    Event,
    Failed,
    Finished,
    FinishReason,
    InvalidRequest,
    SamplingParams,
    TextDelta,
)


DISCONNECT_POLL_S = 0.25  # how often a non-streaming request checks that its client is there
FINAL_EVENTS_TIMEOUT_S = 5.0  # on shutdown; the engine ends a cancelled answer within one step


@dataclass
class PreparedRequest:
    prompt_tokens: list[int]
    sampling: SamplingParams
    endpoint: str
    function_names: list[str] = field(default_factory=list)  # tools the answer may call


class Serving:
    def __init__(self, runtime: Runtime, metrics: Metrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.active: set[Answer] = set()  # admitted and not yet ended
        self.draining = False  # shutting down: new requests are refused

    # ---- requests in ------------------------------------------------------------------
    # `model` is not checked: a one-model server answers any name with the model it has
    # (clients send fixed names such as gpt-4o-mini) and says which in each response.

    def prepare_chat(self, body: ChatCompletionRequest) -> PreparedRequest:
        plan = plan_output(body.response_format, body.tools, body.tool_choice)
        messages = [_to_chat_message(m, i) for i, m in enumerate(body.messages)]
        messages = with_schema_instruction(messages, plan.schema_instruction)
        tokens = self.runtime.chat_tokens(messages, plan.tools_for_template)
        sampling = self._sampling(body, body.max_completion_tokens or body.max_tokens)
        sampling.grammar, sampling.grammar_trigger = plan.grammar, plan.lazy_trigger
        if plan.grammar:
            self.runtime.engine.check_grammar(plan.grammar, plan.lazy_trigger)
        self.runtime.scheduler.check_fits(len(tokens), sampling.max_tokens)
        return PreparedRequest(tokens, sampling, "chat", plan.function_names)

    def prepare_completion(self, body: CompletionRequest) -> PreparedRequest:
        try:
            text = body.prompt_text()
        except ValueError as error:
            raise InvalidRequest(str(error), "prompt") from None
        # A raw prompt may carry ChatML markers on purpose: that is what /v1/completions is for.
        tokens = self.runtime.tokenizer.tokenize(text, special=True)
        sampling = self._sampling(body, body.max_tokens or 16)
        self.runtime.scheduler.check_fits(len(tokens), sampling.max_tokens)
        return PreparedRequest(tokens, sampling, "completions")

    def _sampling(self, body, max_tokens: int | None) -> SamplingParams:
        vocabulary = self.runtime.tokenizer.n_vocab
        logit_bias = body.logit_bias_by_token()
        for token in logit_bias:
            if token >= vocabulary:
                raise InvalidRequest(f"logit_bias: token {token} is not in the vocabulary "
                                     f"(0..{vocabulary - 1})", "logit_bias")
        defaults = SamplingParams()
        pick = lambda value, default: default if value is None else value  # noqa: E731
        return SamplingParams(
            temperature=pick(body.temperature, defaults.temperature),
            top_p=pick(body.top_p, defaults.top_p),
            top_k=pick(body.top_k, defaults.top_k),
            min_p=pick(body.min_p, defaults.min_p),
            repetition_penalty=pick(body.repetition_penalty, defaults.repetition_penalty),
            presence_penalty=pick(body.presence_penalty, 0.0),
            frequency_penalty=pick(body.frequency_penalty, 0.0),
            seed=body.seed,
            max_tokens=max_tokens,
            stop=body.stop_list(),
            ignore_eos=body.ignore_eos,
            logit_bias=logit_bias,
        )

    # ---- admission --------------------------------------------------------------------

    def start(self, prepared: PreparedRequest) -> Answer:
        """Hand the request to the scheduler now, before any byte of the response, so a
        refusal (queue full, shutting down) is a proper 503 and never an empty 200 stream."""
        if self.draining:
            raise self.refuse(prepared.endpoint, SchedulerClosed("the server is shutting down"))
        loop = asyncio.get_running_loop()
        answer = Answer(self, prepared.endpoint)
        try:
            answer.request = self.runtime.submit(prepared.prompt_tokens, prepared.sampling,
                                                 lambda event: loop.call_soon_threadsafe(answer.deliver, event))
        except Exception as error:
            raise self.refuse(prepared.endpoint, error) from None
        self.active.add(answer)
        return answer

    def refuse(self, endpoint: str, error: Exception) -> ApiError:
        """The error to answer with, counted in /metrics by endpoint, status and reason."""
        api = as_api_error(error)
        self.metrics.request_refused(endpoint, api.status, api.body["error"].get("code") or "invalid_request")
        return api

    # ---- shutdown ---------------------------------------------------------------------

    async def drain(self, grace_s: float, stop_waiting: Callable[[], bool] = lambda: False) -> None:
        """Refuse new requests, let running answers finish for up to `grace_s`, then end the
        rest: each still gets its final event (saying the server stopped) before we return."""
        self.draining = True
        deadline = time.monotonic() + grace_s
        while self.active and time.monotonic() < deadline and not stop_waiting():
            await asyncio.sleep(0.05)
        for answer in list(self.active):
            answer.cancel(FinishReason.SHUTDOWN)
        deadline = time.monotonic() + FINAL_EVENTS_TIMEOUT_S
        while self.active and time.monotonic() < deadline:  # until each stream has sent it
            await asyncio.sleep(0.02)


class Answer:
    """One admitted request, seen from the event loop: its events as they happen."""

    def __init__(self, serving: Serving, endpoint: str) -> None:
        self._serving = serving
        self.endpoint = endpoint
        self.request: Request | None = None
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.done = False
        self._read = False  # a consumer is reading events(): it retires the answer itself

    def deliver(self, event: Event) -> None:  # on the event loop, for each engine event
        if isinstance(event, (Finished, Failed)) and not self._read:
            self._serving.active.discard(self)  # nobody will read it
        self._queue.put_nowait(event)

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        if self.request is not None:
            self.request.cancel(reason)

    async def events(self) -> AsyncIterator[Event]:
        """Until Finished or Failed. Leaving early (client gone, task cancelled) cancels
        the request; the engine frees it within one step."""
        metrics = self._serving.metrics
        self._read = True
        try:
            while not self.done:
                event = await self._queue.get()
                if isinstance(event, Finished):
                    metrics.request_finished(self.endpoint, event)
                    self.done = True
                elif isinstance(event, Failed):
                    metrics.request_failed(self.endpoint)
                    self.done = True
                yield event
        finally:
            # Only once the consumer has passed the final event on (a shutdown waits for this).
            self._serving.active.discard(self)
            if not self.done:
                self.cancel()
                metrics.request_cancelled(self.endpoint)

    async def complete(self, disconnected: Callable[[], Awaitable[bool]]) -> tuple[str, Finished]:
        """Run to the end for a non-streaming response; a client that leaves cancels it."""
        watcher = asyncio.create_task(self._cancel_when(disconnected))
        pieces: list[str] = []
        try:
            async for event in self.events():
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
                elif isinstance(event, Failed):
                    raise ApiError(500, event.message, type_="server_error", code=event.code)
                elif isinstance(event, Finished) and event.reason is FinishReason.SHUTDOWN:
                    raise answer_cut_by_shutdown()
                elif isinstance(event, Finished) and event.reason is FinishReason.CANCELLED:
                    raise ApiError(499, "client closed the request", code="client_closed")
                elif isinstance(event, Finished):
                    return "".join(pieces), event
        finally:
            watcher.cancel()
        raise ApiError(500, "the answer ended without a final event", type_="server_error")

    async def _cancel_when(self, disconnected: Callable[[], Awaitable[bool]]) -> None:
        """Polled on its own clock: tokens arriving every few ms must not keep us from
        noticing that nobody is waiting for them any more."""
        while not await disconnected():
            await asyncio.sleep(DISCONNECT_POLL_S)
        self.cancel()


def _to_chat_message(message, index: int) -> ChatMessage:
    role = "system" if message.role == "developer" else message.role
    tool_calls = None
    if message.tool_calls:
        tool_calls = [call.model_dump() for call in message.tool_calls]
    try:
        return ChatMessage(role, message.text(), message.name, tool_calls, message.tool_call_id)
    except InvalidRequest as error:
        raise InvalidRequest(error.message, f"messages[{index}].{error.param}") from None
