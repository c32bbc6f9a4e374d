"""HTTP routes of the OpenAI-compatible API, plus /health and /metrics."""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from jisu.server.errors import answer_cut_by_shutdown, error_body, error_responses
from jisu.server.metrics import CONTENT_TYPE_LATEST
from jisu.server.protocol import (
    ChatCompletionRequest,
    ChunkWriter,
    CompletionRequest,
    new_id,
    openai_finish_reason,
    usage_dict,
)
from jisu.server.serving import Answer, PreparedRequest, Serving
from jisu.structured.tool_calls import ToolCallStream, split_tool_calls
from jisu.types import Failed, Finished, FinishReason, PrefillProgress, Queued, TextDelta

router = APIRouter()


def _serving(request: Request) -> Serving:
    return request.app.state.serving


def sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


DOOR = (401, 403)  # every route, when keys are set or the Host/Origin is foreign
BODY = (400, 408, 413)  # every route that takes a JSON body
STREAMED = {200: {"content": {"application/json": {}, "text/event-stream": {}},
                  "description": "The answer, or with stream=true its chunks as server-sent events"}}


@router.get("/health", responses=error_responses(403, 503))
async def health(request: Request) -> JSONResponse:
    serving = _serving(request)
    if serving.draining:  # load balancers stop sending before the port closes
        return JSONResponse({"status": "shutting_down"}, status_code=503)
    if not serving.runtime.scheduler.alive:
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok", "model": serving.runtime.info.name})


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}, **error_responses(*DOOR)})
async def metrics(request: Request) -> Response:
    return Response(_serving(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", responses=error_responses(*DOOR))
async def list_models(request: Request) -> dict[str, Any]:
    info = _serving(request).runtime.info
    return {
        "object": "list",
        "data": [{
            "id": info.id,
            "object": "model",
            "created": request.app.state.started_at,
            "owned_by": "jisu",
            "name": info.name,
            "quantization": info.quantization,
            "context_size": info.context_size,
            "fallback_note": info.fallback_note,
        }],
    }


@router.post("/v1/chat/completions", responses={**STREAMED, **error_responses(*DOOR, *BODY, 503)})
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    serving = _serving(request)
    prepared = _prepare(serving, lambda: serving.prepare_chat(body), "chat")
    answer = serving.start(prepared)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        writer = ChunkWriter(serving.runtime.info.id)
        return _event_stream(stream_chunks(answer, prepared, writer, include_usage))
    text, finished = await answer.complete(request.is_disconnected)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish_reason = openai_finish_reason(finished.reason)
    content, calls = split_tool_calls(text, prepared.function_names)
    if calls:
        message = {"role": "assistant", "content": content, "tool_calls": calls}
        finish_reason = "tool_calls"
    return JSONResponse({
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": serving.runtime.info.id,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": usage_dict(finished.usage),
        "timings": finished.timings.as_dict(),
    })


@router.post("/v1/completions", responses={**STREAMED, **error_responses(*DOOR, *BODY, 503)})
async def completions(body: CompletionRequest, request: Request) -> Response:
    serving = _serving(request)
    prepared = _prepare(serving, lambda: serving.prepare_completion(body), "completions")
    answer = serving.start(prepared)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        writer = ChunkWriter(serving.runtime.info.id, kind="text")
        return _event_stream(stream_chunks(answer, prepared, writer, include_usage))
    text, finished = await answer.complete(request.is_disconnected)
    if body.echo:
        text = body.prompt_text() + text
    return JSONResponse({
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": serving.runtime.info.id,
        "choices": [{"index": 0, "text": text, "logprobs": None,
                     "finish_reason": openai_finish_reason(finished.reason)}],
        "usage": usage_dict(finished.usage),
        "timings": finished.timings.as_dict(),
    })


def _prepare(serving: Serving, prepare, endpoint: str) -> PreparedRequest:
    try:
        return prepare()
    except Exception as error:
        raise serving.refuse(endpoint, error) from None


def _event_stream(chunks: AsyncIterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)


async def stream_chunks(answer: Answer, prepared: PreparedRequest, writer: ChunkWriter,
                        include_usage: bool) -> AsyncIterator[str]:
    """OpenAI's chunk sequence. Queue position and prompt progress travel as SSE comments,
    which OpenAI clients skip and people watching the raw stream can read. An answer the
    server could not finish ends with an error event (OpenAI clients raise it) and [DONE]."""
    calls = ToolCallStream(prepared.function_names) if prepared.function_names else None
    if writer.kind == "chat":
        yield sse(writer.role())
    async for event in answer.events():
        if isinstance(event, TextDelta):
            text = calls.feed(event.text) if calls else event.text
            if text:
                yield sse(writer.content(text))
        elif isinstance(event, Queued):
            yield f": queued {event.position} ahead\n\n"
        elif isinstance(event, PrefillProgress):
            yield f": prefill {event.processed}/{event.total}\n\n"
        elif isinstance(event, Finished) and event.reason is FinishReason.SHUTDOWN:
            yield sse(answer_cut_by_shutdown().body)
        elif isinstance(event, Finished):
            reason = openai_finish_reason(event.reason)
            if calls:
                rest, tool_calls = calls.finish()
                if rest:
                    yield sse(writer.content(rest))
                if tool_calls:
                    yield sse(writer.tool_calls(tool_calls))
                    reason = "tool_calls"
            yield sse(writer.finish(reason, event.timings))
            if include_usage:
                yield sse(writer.usage(event.usage))
        elif isinstance(event, Failed):
            yield sse(error_body(event.message, "server_error", code=event.code))
    yield "data: [DONE]\n\n"
