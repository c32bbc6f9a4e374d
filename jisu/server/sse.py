"""An answer's events as OpenAI's server-sent event stream, for chat and text completions.

Queue position and prompt progress travel as SSE comments, which OpenAI clients skip and
people watching the raw stream can read. An answer the server could not finish ends with
an error event (OpenAI clients raise it) and then [DONE], like every stream.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from fastapi.responses import StreamingResponse

from jisu.server.errors import answer_cut_by_shutdown, answer_failed
from jisu.server.protocol import TOOL_CALLS_FINISH, ChunkWriter, openai_finish_reason
from jisu.server.serving import Answer
from jisu.structured.tool_calls import ToolCallStream
from jisu.types import EventReader, Failed, Finished, FinishReason, PrefillProgress, Queued, TextDelta

DONE = "data: [DONE]\n\n"


def sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class ChunkStream(EventReader[list[str]]):
    """The SSE lines each event becomes. With tools, text is shown until a `<tool_call>`
    starts; the calls follow as one tool_calls chunk once the answer has ended. Logprobs
    asked for travel with the text of their tokens; the tokens of a tool call, whose text is
    held back, get a chunk of their own (empty content) so none is lost."""

    def __init__(self, writer: ChunkWriter, functions: dict[str, dict[str, Any]], include_usage: bool,
                 echoed: str = "") -> None:
        self.writer = writer
        self.include_usage = include_usage
        self.calls = ToolCallStream(functions) if functions else None
        self.echoed = echoed  # a completion's prompt, sent first when the request asked for echo

    def opening(self) -> list[str]:
        if self.writer.kind == "chat":
            return [sse(self.writer.role())]
        return [sse(self.writer.content(self.echoed))] if self.echoed else []

    def queued(self, event: Queued) -> list[str]:
        return [f": queued {event.position} ahead\n\n"]

    def progress(self, event: PrefillProgress) -> list[str]:
        return [f": prefill {event.processed}/{event.total}\n\n"]

    def text(self, event: TextDelta) -> list[str]:
        shown = self.calls.feed(event.text) if self.calls else event.text
        return [sse(self.writer.content(shown, event.logprobs))] if shown or event.logprobs else []

    def finished(self, event: Finished) -> list[str]:
        if event.reason is FinishReason.SHUTDOWN:
            return [sse(answer_cut_by_shutdown().body)]
        lines, reason = [], openai_finish_reason(event.reason)
        if self.calls:
            rest, tool_calls = self.calls.finish()
            if rest:
                lines.append(sse(self.writer.content(rest)))
            if tool_calls:
                lines.append(sse(self.writer.tool_calls(tool_calls)))
                reason = TOOL_CALLS_FINISH
        lines.append(sse(self.writer.finish(reason, event.timings)))
        if self.include_usage:
            lines.append(sse(self.writer.usage(event.usage)))
        return lines

    def failed(self, event: Failed) -> list[str]:
        return [sse(answer_failed(event).body)]


def event_stream(answer: Answer, chunks: ChunkStream) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_lines(answer, chunks), media_type="text/event-stream", headers=headers)


async def _lines(answer: Answer, chunks: ChunkStream) -> AsyncIterator[str]:
    for line in chunks.opening():
        yield line
    async for event in answer.events():
        for line in chunks.read(event):
            yield line
    yield DONE
