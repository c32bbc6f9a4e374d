"""WebSocket /v1/ws: the web UI's channel. Same request fields as chat completions.

Client → server:  {"type": "chat", ...chat completion fields...}   {"type": "cancel"}
Server → client:  {"type": "queued", "position": n}
                  {"type": "progress", "processed": n, "total": m}
                  {"type": "token", "text": "..."}
                  {"type": "done", "finish_reason": ..., "usage": {...}, "timings": {...}}
                  {"type": "error", "error": {message, type, param, code, ...}}
One answer at a time per socket; a closed socket cancels its answer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from jisu.server.errors import ApiError, as_api_error, error_body, validation_error
from jisu.server.protocol import ChatCompletionRequest, openai_finish_reason, usage_dict
from jisu.server.serving import PreparedRequest, Serving
from jisu.types import Event, Finished, FinishReason, PrefillProgress, Queued, TextDelta

router = APIRouter()
MAX_MESSAGE_BYTES = 8 << 20


@router.websocket("/v1/ws")
async def chat_socket(socket: WebSocket) -> None:
    await socket.accept()
    serving: Serving = socket.app.state.serving
    answering: asyncio.Task | None = None
    current: list[PreparedRequest] = []  # the answer in progress, for "cancel"
    try:
        while True:
            message = _parse(await socket.receive_text())
            if isinstance(message, ApiError):
                await _send_error(socket, message)
                continue
            kind = message.get("type")
            busy = answering is not None and not answering.done()
            if kind == "cancel":
                # The engine ends the answer within one step and the "done" event follows.
                if busy and current and current[0].submitted:
                    current[0].submitted.cancel()
            elif kind != "chat":
                await _send_error(socket, ApiError(
                    400, f"unknown message type {kind!r}; expected 'chat' or 'cancel'", param="type"))
            elif busy:
                await _send_error(socket, ApiError(
                    409, "an answer is already being generated on this socket; cancel it first", code="busy"))
            else:
                answering = asyncio.create_task(_answer(socket, serving, message, current))
    except WebSocketDisconnect:
        pass
    finally:
        if answering and not answering.done():
            answering.cancel()  # leaving serving.events() cancels the request


def _parse(raw: str) -> dict[str, Any] | ApiError:
    if len(raw) > MAX_MESSAGE_BYTES:
        return ApiError(413, "message too large", code="request_too_large")
    try:
        message = json.loads(raw)
    except json.JSONDecodeError:
        return ApiError(400, "The message is not valid JSON.", code="invalid_json")
    if not isinstance(message, dict):
        return ApiError(400, "The message must be a JSON object.", code="invalid_json")
    return message


async def _answer(socket: WebSocket, serving: Serving, message: dict[str, Any],
                  current: list[PreparedRequest]) -> None:
    try:
        body = ChatCompletionRequest.model_validate({k: v for k, v in message.items() if k != "type"})
        prepared = serving.prepare_chat(body)
        current[:] = [prepared]
        async for event in serving.events(prepared):
            await socket.send_json(_event_message(event))
    except ValidationError as error:
        await _send_error(socket, validation_error(RequestValidationError(error.errors())))
    except Exception as error:
        await _send_error(socket, as_api_error(error))
    finally:
        current.clear()


def _event_message(event: Event) -> dict[str, Any]:
    if isinstance(event, TextDelta):
        return {"type": "token", "text": event.text}
    if isinstance(event, Queued):
        return {"type": "queued", "position": event.position}
    if isinstance(event, PrefillProgress):
        return {"type": "progress", "processed": event.processed, "total": event.total}
    if isinstance(event, Finished):
        cancelled = event.reason is FinishReason.CANCELLED
        return {
            "type": "done",
            "finish_reason": "cancelled" if cancelled else openai_finish_reason(event.reason),
            "usage": usage_dict(event.usage),
            "timings": event.timings.as_dict(),
        }
    return {"type": "error", **error_body(event.message, "server_error", code=event.code)}


async def _send_error(socket: WebSocket, api: ApiError) -> None:
    try:
        await socket.send_json({"type": "error", "status": api.status, **api.body})
    except Exception:  # the client is gone; nobody is left to tell
        pass
