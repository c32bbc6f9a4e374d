"""WebSocket /v1/ws: the web UI's channel. Same request fields as chat completions.

Client → server:  {"type": "auth", "api_key": "..."}   (first, when the server has keys and
                                                         the handshake carried none)
                  {"type": "chat", ...chat completion fields...}   {"type": "cancel"}
Server → client:  {"type": "ready", "user": name}       (after a successful auth message)
                  {"type": "stored", "conversation_id", "message_id", "parent_message_id"}
                                                        (first, for a chat with conversation_id:
                                                         where the turn is kept; "done" repeats them)
                  {"type": "queued", "position": n}
                  {"type": "progress", "processed": n, "total": m}
                  {"type": "token", "text": "..."}       (with "logprobs": [...] when asked, as
                                                         in a chat chunk's logprobs.content)
                  {"type": "done", "finish_reason": ..., "usage": {...}, "timings": {...}}
                  {"type": "error", "status": n, "error": {message, type, param, code}}
One answer at a time per socket; a closed socket cancels its answer. A key can also come in
the handshake: `Authorization: Bearer KEY`, or the subprotocols `jisu, jisu-key.KEY`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from jisu.server.conversation_turns import start_chat
from jisu.server.errors import ApiError, answer_failed, validation_error
from jisu.server.guard import WEBSOCKET_PROTOCOL
from jisu.server.logprobs import token_entries
from jisu.server.protocol import ChatCompletionRequest, openai_finish_reason, usage_dict
from jisu.server.serving import Answer, Serving
from jisu.types import EventReader, Failed, Finished, FinishReason, PrefillProgress, Queued, TextDelta

router = APIRouter()
AUTH_TIMEOUT_S = 10.0
CLOSE_UNAUTHORIZED = 4401  # application close codes are 4000-4999; this one mirrors HTTP 401


@router.websocket("/v1/ws")
async def chat_socket(socket: WebSocket) -> None:
    offered = socket.scope.get("subprotocols", [])
    await socket.accept(subprotocol=WEBSOCKET_PROTOCOL if WEBSOCKET_PROTOCOL in offered else None)
    await ChatSession(socket, socket.app.state.serving).run()


class ChatSession:
    """One socket: who it belongs to, and the answer it is streaming (if any)."""

    def __init__(self, socket: WebSocket, serving: Serving) -> None:
        self.socket = socket
        self.serving = serving
        self.user: str | None = socket.scope.get("state", {}).get("user")
        self.answer: Answer | None = None
        self.streaming: asyncio.Task | None = None

    async def run(self) -> None:
        try:
            if self.user is None and not await self._authenticate():
                return
            while True:
                message = await self._receive()
                if message is not None:
                    await self._handle(message)
        except WebSocketDisconnect:
            pass
        finally:
            if self.streaming and not self.streaming.done():
                self.streaming.cancel()  # leaving Answer.events() cancels the request

    async def _authenticate(self) -> bool:
        """The server has keys and the handshake brought none: the first message must."""
        policy = self.socket.app.state.access
        try:
            message = await asyncio.wait_for(self._receive(), AUTH_TIMEOUT_S)
        except asyncio.TimeoutError:
            message = None
        key = message.get("api_key") if isinstance(message, dict) and message.get("type") == "auth" else None
        self.user = policy.user_for_key(key if isinstance(key, str) else None)
        if self.user is None:
            self.serving.metrics.refused("invalid_api_key")
            await self._send_error(ApiError(401, "Missing or wrong API key: send {\"type\": \"auth\", "
                                                 "\"api_key\": KEY} first.", type_="authentication_error",
                                            code="invalid_api_key"))
            await self.socket.close(CLOSE_UNAUTHORIZED, "invalid api key")
            return False
        await self.socket.send_json({"type": "ready", "user": self.user})
        return True

    async def _receive(self) -> dict[str, Any] | None:
        """The next message as a JSON object; a bad one is answered with an error and None."""
        message = await self.socket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("text") is None:
            await self._send_error(ApiError(400, "Binary messages are not understood; send JSON as text.",
                                            code="invalid_message"))
            return None
        try:
            parsed = json.loads(message["text"])
        except json.JSONDecodeError:
            await self._send_error(ApiError(400, "The message is not valid JSON.", code="invalid_json"))
            return None
        if not isinstance(parsed, dict):
            await self._send_error(ApiError(400, "The message must be a JSON object.", code="invalid_json"))
            return None
        return parsed

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        busy = self.streaming is not None and not self.streaming.done()
        if kind == "cancel":
            if busy and self.answer:
                self.answer.cancel()  # the engine ends it within one step; "done" follows
        elif kind == "auth":
            await self.socket.send_json({"type": "ready", "user": self.user})
        elif kind != "chat":
            await self._send_error(ApiError(
                400, f"unknown message type {kind!r}; expected 'chat' or 'cancel'", param="type"))
        elif busy:
            await self._send_error(ApiError(
                409, "an answer is already being generated on this socket; cancel it first", code="busy"))
        else:
            await self._start(message)

    async def _start(self, message: dict[str, Any]) -> None:
        """Admit the answer now (so a cancel right after it is never lost), stream it apart."""
        try:
            body = ChatCompletionRequest.model_validate({k: v for k, v in message.items() if k != "type"})
        except ValidationError as error:
            await self._send_error(self.serving.refuse("websocket", validation_error(
                RequestValidationError(error.errors()))))
            return
        try:
            started = await start_chat(self.serving, self.socket.app.state.history, self.user, body, "websocket")
        except ApiError as refused:  # counted where it was raised
            await self._send_error(refused)
            return
        self.answer = started.answer
        self.streaming = asyncio.create_task(self._stream(self.answer, started.stored))

    async def _stream(self, answer: Answer, stored: dict[str, str]) -> None:
        try:
            if stored:
                await self.socket.send_json({"type": "stored", **stored})
            async for event in answer.events():
                message = MESSAGES.read(event)
                if message["type"] == "done":
                    message.update(stored)
                await self.socket.send_json(message)
        except Exception:  # the socket went away mid-answer
            pass
        finally:
            if not answer.done:
                answer.cancel()  # also when the socket went before the first event was read

    async def _send_error(self, api: ApiError) -> None:
        try:
            await self.socket.send_json({"type": "error", "status": api.status, **api.body})
        except Exception:  # the client is gone; nobody is left to tell
            pass


class SocketMessages(EventReader[dict[str, Any]]):
    """The message each event becomes on the socket (see the module doc)."""

    def queued(self, event: Queued) -> dict[str, Any]:
        return {"type": "queued", "position": event.position}

    def progress(self, event: PrefillProgress) -> dict[str, Any]:
        return {"type": "progress", "processed": event.processed, "total": event.total}

    def text(self, event: TextDelta) -> dict[str, Any]:
        if event.logprobs is None:
            return {"type": "token", "text": event.text}
        return {"type": "token", "text": event.text, "logprobs": token_entries(event.logprobs)}

    def finished(self, event: Finished) -> dict[str, Any]:
        # The page says why an answer ended early, so those reasons keep their own names.
        named = event.reason in (FinishReason.CANCELLED, FinishReason.SHUTDOWN)
        return {
            "type": "done",
            "finish_reason": event.reason.value if named else openai_finish_reason(event.reason),
            "usage": usage_dict(event.usage),
            "timings": event.timings.as_dict(),
        }

    def failed(self, event: Failed) -> dict[str, Any]:
        return {"type": "error", **answer_failed(event).body}


MESSAGES = SocketMessages()
