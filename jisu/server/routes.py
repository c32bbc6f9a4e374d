"""HTTP routes of the OpenAI-compatible API, plus /health and /metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from jisu.runtime import CacheOwner
from jisu.server.conversation_turns import start_chat
from jisu.server.errors import error_responses
from jisu.server.logprobs import chat_logprobs, completion_logprobs
from jisu.server.metrics import CONTENT_TYPE_LATEST
from jisu.server.protocol import (
    TOOL_CALLS_FINISH,
    ChatCompletionRequest,
    ChunkWriter,
    CompletionRequest,
    new_id,
    openai_finish_reason,
    usage_dict,
)
from jisu.server.serving import PreparedRequest, Serving
from jisu.server.sse import ChunkStream, event_stream
from jisu.structured.tool_calls import split_tool_calls

router = APIRouter()


def _serving(request: Request) -> Serving:
    return request.app.state.serving


DOOR = (401, 403)  # every route, when keys are set or the Host/Origin is foreign
BODY = (400, 408, 413)  # every route that takes a JSON body
STREAMED = {200: {"content": {"application/json": {}, "text/event-stream": {}},
                  "description": "The answer, or with stream=true its chunks as server-sent events"}}


@router.get("/health", responses=error_responses(403, 503))
async def health(request: Request) -> JSONResponse:
    serving = _serving(request)
    if serving.draining:  # load balancers stop sending before the port closes
        return JSONResponse({"status": "shutting_down"}, status_code=503)
    if not serving.runtime.alive:
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
            "fallback_detail": info.fallback_detail,
        }],
    }


@router.post("/v1/chat/completions", responses={**STREAMED, **error_responses(*DOOR, *BODY, 404, 503)})
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """OpenAI's chat completion. With jisu's `conversation_id` it is a turn of a conversation
    the server keeps: the response then also carries `conversation_id`, `message_id` (the
    answer) and `parent_message_id` (the user message it answers); streamed, on the first and
    the finishing chunk."""
    serving = _serving(request)
    started = await start_chat(serving, request.app.state.history, request.state.user, body, "chat")
    prepared, answer, stored = started.prepared, started.answer, started.stored
    if body.stream:
        writer = ChunkWriter(serving.runtime.info.id, fingerprint=serving.runtime.info.fingerprint, stored=stored)
        return event_stream(answer, ChunkStream(writer, prepared.functions, _includes_usage(body)))
    whole = await answer.complete(request.is_disconnected)
    text, finished = whole.text, whole.finished
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish_reason = openai_finish_reason(finished.reason)
    content, calls = split_tool_calls(text, prepared.functions)
    if calls:
        message = {"role": "assistant", "content": content, "tool_calls": calls}
        finish_reason = TOOL_CALLS_FINISH
    return JSONResponse({
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": serving.runtime.info.id,
        "system_fingerprint": serving.runtime.info.fingerprint,
        "choices": [{
            "index": 0,
            "message": message,
            # Every token of the answer the model wrote, tool-call markup included.
            "logprobs": chat_logprobs(whole.logprobs) if body.logprobs else None,
            "finish_reason": finish_reason,
        }],
        "usage": usage_dict(finished.usage),
        "timings": finished.timings.as_dict(),
        **stored,
    })


@router.post("/v1/completions", responses={**STREAMED, **error_responses(*DOOR, *BODY, 503)})
async def completions(body: CompletionRequest, request: Request) -> Response:
    serving = _serving(request)
    prepared = _prepare(serving, lambda: serving.prepare_completion(body), "completions")
    answer = serving.start(prepared, CacheOwner(request.state.user))
    if body.stream:
        writer = ChunkWriter(serving.runtime.info.id, kind="text", fingerprint=serving.runtime.info.fingerprint)
        echoed = body.prompt_text() if body.echo else ""
        return event_stream(answer, ChunkStream(writer, {}, _includes_usage(body), echoed))
    whole = await answer.complete(request.is_disconnected)
    text, finished = whole.text, whole.finished
    if body.echo:  # never with logprobs (CompletionRequest refuses it): the offsets stay right
        text = body.prompt_text() + text
    logprobs = completion_logprobs(whole.logprobs) if body.logprobs is not None else None
    return JSONResponse({
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": serving.runtime.info.id,
        "system_fingerprint": serving.runtime.info.fingerprint,
        "choices": [{"index": 0, "text": text, "logprobs": logprobs,
                     "finish_reason": openai_finish_reason(finished.reason)}],
        "usage": usage_dict(finished.usage),
        "timings": finished.timings.as_dict(),
    })


def _includes_usage(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _prepare(serving: Serving, prepare, endpoint: str) -> PreparedRequest:
    try:
        return prepare()
    except Exception as error:
        raise serving.refuse(endpoint, error) from None
