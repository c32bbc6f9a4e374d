"""From a request to engine events and back: shared by the HTTP (OpenAI's and Ollama's) and
WebSocket routes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol, Sequence

from jisu.runtime import CacheOwner, Generation, Prompt, Runtime
from jisu.server.event_port import EventPort
from jisu.server.errors import ApiError, answer_cut_by_shutdown, answer_failed, as_api_error
from jisu.server.metrics import Metrics
from jisu.server.protocol import ChatCompletionRequest, CompletionRequest
from jisu.structured.plan import OutputPlan, plan_output
from jisu.structured.response_format import with_schema_instruction
from jisu.structured.tools import with_tool_result_note
from jisu.types import (
    ChatMessage,
    Event,
    EventReader,
    Failed,
    Finished,
    FinishReason,
    InvalidRequest,
    PrefillProgress,
    Queued,
    SamplingParams,
    SchedulerClosed,
    TextDelta,
    TokenLogprob,
)


DISCONNECT_POLL_S = 0.25  # how often a non-streaming request checks that its client is there
FINAL_EVENTS_TIMEOUT_S = 5.0  # on shutdown; the engine ends a cancelled answer within one step


@dataclass
class CompletedAnswer:
    """A non-streaming answer, read to its end."""

    text: str
    finished: Finished
    logprobs: list[TokenLogprob]  # empty unless asked for


class AnswerObserver(Protocol):
    """Something that follows an answer's events beside its reader (a conversation's record)."""

    def see(self, event: Event) -> None:
        """Each event, on the event loop, as it arrives, whoever reads the answer: must be cheap."""

    async def settled(self) -> None:
        """Awaited before the final event goes to the reader."""


@dataclass
class PreparedRequest:
    prompt: Prompt
    endpoint: str
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # tools the answer may call, by name


class Serving:
    def __init__(self, runtime: Runtime, metrics: Metrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.active: set[Answer] = set()  # admitted and not yet ended
        self.draining = False  # shutting down: new requests are refused
        self._port: EventPort | None = None

    # ---- requests in ------------------------------------------------------------------
    # `model` is not checked: a one-model server answers any name with the model it has
    # (clients send fixed names such as gpt-4o-mini) and says which in each response.

    def prepare_chat(self, body: ChatCompletionRequest, endpoint: str = "chat",
                     history: Sequence[ChatMessage] = ()) -> PreparedRequest:
        """`history`: what a stored conversation puts in front of the request's messages."""
        plan = plan_output(body.response_format, body.tools, body.tool_choice)
        messages = [*history, *(_to_chat_message(m, i) for i, m in enumerate(body.messages))]
        return self.prepare_conversation(messages, body.sampling_params(), plan, endpoint)

    def prepare_completion(self, body: CompletionRequest) -> PreparedRequest:
        try:
            text = body.prompt_text()
        except ValueError as error:
            raise InvalidRequest(str(error), "prompt") from None
        return self.prepare_text(text, body.sampling_params(), OutputPlan(), "completions")

    # The same for any wire format (OpenAI's above, Ollama's in ollama.py): messages and
    # sampling already read from the request, and the output plan (plan_output) it asks for.

    def prepare_conversation(self, messages: list[ChatMessage], sampling: SamplingParams, plan: OutputPlan,
                             endpoint: str) -> PreparedRequest:
        """A chat through the template, the answer constrained as `plan` says."""
        messages = with_schema_instruction(messages, plan.schema_instruction)
        messages = with_tool_result_note(messages, plan.tool_result_note)
        sampling.grammar, sampling.grammar_trigger = plan.grammar, plan.lazy_trigger
        prompt = self.runtime.prepare_chat(messages, sampling, plan.tools_for_template)
        return PreparedRequest(prompt, endpoint, plan.functions)

    def prepare_text(self, text: str, sampling: SamplingParams, plan: OutputPlan, endpoint: str) -> PreparedRequest:
        """A raw prompt continued as written; a plan can constrain it (JSON) but not call tools."""
        sampling.grammar, sampling.grammar_trigger = plan.grammar, plan.lazy_trigger
        return PreparedRequest(self.runtime.prepare_completion(text, sampling), endpoint)

    # ---- admission --------------------------------------------------------------------

    def start(self, prepared: PreparedRequest, owner: CacheOwner, observer: AnswerObserver | None = None) -> Answer:
        """Hand the request to the scheduler now, before any byte of the response, so a
        refusal (queue full, shutting down) is a proper 503 and never an empty 200 stream.
        `owner`: whose cached state the prompt may start from (the user's, never another's)."""
        if self.draining:
            raise self.refuse(prepared.endpoint, SchedulerClosed("the server is shutting down"))
        answer = Answer(self, prepared.endpoint, observer)
        try:
            answer.generation = self.runtime.start(prepared.prompt, self._event_port().sink(answer.deliver), owner)
        except Exception as error:
            raise self.refuse(prepared.endpoint, error) from None
        self.active.add(answer)
        return answer

    def _event_port(self) -> EventPort:
        loop = asyncio.get_running_loop()
        if self._port is None or self._port.loop is not loop:  # tests may serve from a new loop
            self._port = EventPort(loop)
        return self._port

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

    def __init__(self, serving: Serving, endpoint: str, observer: AnswerObserver | None = None) -> None:
        self._serving = serving
        self.endpoint = endpoint
        self._observer = observer
        self.generation: Generation | None = None
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.done = False
        self._read = False  # a consumer is reading events(): it retires the answer itself

    def deliver(self, event: Event) -> None:  # on the event loop, for each engine event
        if self._observer is not None:
            self._observer.see(event)
        if isinstance(event, (Finished, Failed)) and not self._read:
            self._serving.active.discard(self)  # nobody will read it
        self._queue.put_nowait(event)

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        if self.generation is not None:
            self.generation.cancel(reason)

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
                if self.done and self._observer is not None:
                    await self._observer.settled()
                yield event
        finally:
            # Only once the consumer has passed the final event on (a shutdown waits for this).
            self._serving.active.discard(self)
            if not self.done:
                self.cancel()
                metrics.request_cancelled(self.endpoint)

    async def complete(self, disconnected: Callable[[], Awaitable[bool]]) -> CompletedAnswer:
        """Run to the end for a non-streaming response; a client that leaves cancels it."""
        watcher = asyncio.create_task(self._cancel_when(disconnected))
        whole = WholeAnswer()
        try:
            async for event in self.events():
                whole.read(event)
        finally:
            watcher.cancel()
        if whole.end is None:
            raise ApiError(500, "the answer ended without a final event", type_="server_error")
        return CompletedAnswer("".join(whole.pieces), whole.end, whole.logprobs)

    async def _cancel_when(self, disconnected: Callable[[], Awaitable[bool]]) -> None:
        """Polled on its own clock: tokens arriving every few ms must not keep us from
        noticing that nobody is waiting for them any more."""
        while not await disconnected():
            await asyncio.sleep(DISCONNECT_POLL_S)
        self.cancel()


class WholeAnswer(EventReader[None]):
    """A non-streaming response's reading of the events: the text gathered, and an answer
    that did not come to its end raised as the error the client gets instead."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.logprobs: list[TokenLogprob] = []
        self.end: Finished | None = None

    def queued(self, event: Queued) -> None:
        pass  # nobody watches a non-streaming request wait

    def progress(self, event: PrefillProgress) -> None:
        pass

    def text(self, event: TextDelta) -> None:
        self.pieces.append(event.text)
        if event.logprobs:
            self.logprobs.extend(event.logprobs)

    def finished(self, event: Finished) -> None:
        if event.reason is FinishReason.SHUTDOWN:
            raise answer_cut_by_shutdown()
        if event.reason is FinishReason.CANCELLED:
            raise ApiError(499, "client closed the request", code="client_closed")
        self.end = event

    def failed(self, event: Failed) -> None:
        raise answer_failed(event)


def _to_chat_message(message, index: int) -> ChatMessage:
    role = "system" if message.role == "developer" else message.role
    tool_calls = None
    if message.tool_calls:
        tool_calls = [call.model_dump() for call in message.tool_calls]
    try:
        return ChatMessage(role, message.text(), message.name, tool_calls, message.tool_call_id)
    except InvalidRequest as error:
        raise InvalidRequest(error.message, f"messages[{index}].{error.param}") from None
