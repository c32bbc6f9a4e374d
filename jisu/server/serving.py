"""From an OpenAI request to engine events and back: shared by the HTTP and WebSocket routes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import AsyncIterator

from jisu.scheduler.request import Request
from jisu.scheduler.runtime import Runtime
from jisu.server.errors import ApiError, model_not_found
from jisu.server.metrics import Metrics
from jisu.server.protocol import ChatCompletionRequest, CompletionRequest
from jisu.server.tools import plan_output, with_schema_instruction
from jisu.types import (
    ChatMessage,
    Event,
    Failed,
    Finished,
    InvalidRequest,
    SamplingParams,
    TextDelta,
)


@dataclass
class PreparedRequest:
    prompt_tokens: list[int]
    sampling: SamplingParams
    endpoint: str
    function_names: list[str] = field(default_factory=list)  # tools the answer may call
    submitted: Request | None = None  # set once the scheduler has it; cancel() through it


class Serving:
    def __init__(self, runtime: Runtime, metrics: Metrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        info = runtime.info
        self._model_names = {info.id.lower(), info.name.lower()}

    # ---- requests in ------------------------------------------------------------------

    def check_model(self, name: str | None) -> None:
        if name and name.lower() not in self._model_names:
            raise model_not_found(name, self.runtime.info.id)

    def prepare_chat(self, body: ChatCompletionRequest) -> PreparedRequest:
        self.check_model(body.model)
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
        self.check_model(body.model)
        try:
            text = body.prompt_text()
        except ValueError as error:
            raise InvalidRequest(str(error), "prompt") from None
        # A raw prompt may carry ChatML markers on purpose: that is what /v1/completions is for.
        tokens = self.runtime.tokenizer.tokenize(text, special=True)
        sampling = self._sampling(body, body.max_tokens or 16)
        self.runtime.scheduler.check_fits(len(tokens), sampling.max_tokens)
        return PreparedRequest(tokens, sampling, "completions")

    @staticmethod
    def _sampling(body, max_tokens: int | None) -> SamplingParams:
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
        )

    # ---- events out -------------------------------------------------------------------

    async def events(self, prepared: PreparedRequest) -> AsyncIterator[Event]:
        """The request's events as they happen. Leaving early (client gone, task cancelled)
        cancels the request; the engine frees it within one step."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def deliver(event: Event) -> None:  # runs on the engine thread
            loop.call_soon_threadsafe(queue.put_nowait, event)

        request = prepared.submitted = self.runtime.submit(prepared.prompt_tokens, prepared.sampling, deliver)
        done = False
        try:
            while not done:
                event = await queue.get()
                if isinstance(event, Finished):
                    self.metrics.request_finished(prepared.endpoint, event)
                    done = True
                elif isinstance(event, Failed):
                    self.metrics.request_failed(prepared.endpoint)
                    done = True
                yield event
        finally:
            if not done:
                request.cancel()
                self.metrics.request_cancelled(prepared.endpoint)

    async def complete(self, prepared: PreparedRequest, disconnected) -> tuple[str, Finished]:
        """Run to the end for a non-streaming response; gives up if the client leaves."""
        pieces: list[str] = []
        events = self.events(prepared)
        try:
            async for event in _until_disconnected(events, disconnected):
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
                elif isinstance(event, Failed):
                    raise ApiError(500, event.message, type_="server_error", code=event.code)
                elif isinstance(event, Finished):
                    return "".join(pieces), event
        finally:
            await events.aclose()
        raise ApiError(499, "client closed the request", code="client_closed")


async def _until_disconnected(events: AsyncIterator[Event], disconnected) -> AsyncIterator[Event]:
    """Yield events, stopping early when `disconnected()` turns true (polled while waiting)."""
    iterator = events.__aiter__()
    while True:
        next_event = asyncio.ensure_future(iterator.__anext__())
        while True:
            done, _ = await asyncio.wait({next_event}, timeout=0.25)
            if done:
                break
            if await disconnected():
                next_event.cancel()
                return
        try:
            yield next_event.result()
        except StopAsyncIteration:
            return


def _to_chat_message(message, index: int) -> ChatMessage:
    role = "system" if message.role == "developer" else message.role
    tool_calls = None
    if message.tool_calls:
        tool_calls = [call.model_dump() for call in message.tool_calls]
    try:
        return ChatMessage(role, message.text(), message.name, tool_calls, message.tool_call_id)
    except InvalidRequest as error:
        raise InvalidRequest(error.message, f"messages[{index}].{error.param}") from None
