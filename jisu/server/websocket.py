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
from pydantic import ValidationError

from jisu.server.errors import ApiError, as_api_error, error_body
from jisu.server.protocol import ChatCompletionRequest, openai_finish_reason, usage_dict
from jisu.server.serving import Serving
from jisu.types import Failed, Finished, PrefillProgress, Queued, TextDelta

router = APIRouter()
MAX_MESSAGE_BYTES = 8 << 20


@router.websocket("/v1/ws")
async def chat_socket(socket: WebSocket) -> None:
    await socket.accept()
    serving: Serving = socket.app.state.serving
    answering: asyncio.Task | None = None
    try:
        while True:
            raw = await socket.receive_text()
            message = _parse(raw)
            if isinstance(message, ApiError):
                await socket.send_json({"type": "error", **message.body})
                continue
            kind = message.get("type")
            if kind == "cancel":
                if answering and not answering.done():
                    answering.cancel()
                continue
            if kind != "chat":
                await socket.send_json({"type": "error", **error_body(
                    f"unknown message type {kind!r}; expected 'chat' or 'cancel'", param="type")})
                continue
            if answering and not answering.done():
                await socket.send_json({"type": "error", **error_body(
                    "an answer is already being generated on this socket; cancel it first",
                    code="busy")})
                continue
            answering = asyncio.create_task(_answer(socket, serving, message))
    except WebSocketDisconnect:
        pass
    finally:
        if answering and not answering.done():
            answering.cancel()  # the engine frees the sequence within one step


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


async def _answer(socket: WebSocket, serving: Serving, message: dict[str, Any]) -> None:
    cancelled = False
    try:
        body = ChatCompletionRequest.model_validate({k: v for k, v in message.items() if k != "type"})
        prepared = serving.prepare_chat(body)
        async for event in serving.events(prepared):
            if isinstance(event, TextDelta):
                await socket.send_json({"type": "token", "text": event.text})
            elif isinstance(event, Queued):
                await socket.send_json({"type": "queued", "position": event.position})
            elif isinstance(event, PrefillProgress):
                await socket.send_json({"type": "progress", "processed": event.processed, "total": event.total})
            elif isinstance(event, Finished):
                cancelled = event.reason.value == "cancelled"
                await socket.send_json({
                    "type": "done",
                    "finish_reason": "cancelled" if cancelled else openai_finish_reason(event.reason),
                    "usage": usage_dict(event.usage),
                    "timings": event.timings.as_dict(),
                })
            elif isinstance(event, Failed):
                await socket.send_json({"type": "error", **error_body(event.message, "server_error", code=event.code)})
    except asyncio.CancelledError:
        # Stop button: tell the client the answer ended here, if it is still listening.
        try:
            await socket.send_json({"type": "done", "finish_reason": "cancelled"})
        except Exception:
            pass
    except ValidationError as error:
        from fastapi.exceptions import RequestValidationError
        from jisu.server.errors import validation_error
        api = validation_error(RequestValidationError(error.errors()))
        await _send_error(socket, api)
    except Exception as error:
        await _send_error(socket, as_api_error(error))


async def _send_error(socket: WebSocket, api: ApiError) -> None:
    try:
        await socket.send_json({"type": "error", "status": api.status, **api.body})
    except Exception:
        pass
