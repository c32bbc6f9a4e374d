"""x-request-id on every response, and the server's log line for each request, carrying it.

A client's own X-Request-Id is kept when it is sane (short, visible ASCII without quotes:
it is written into our log), so one request can be followed from the client's log into
ours; otherwise the server makes one. Pure ASGI and outermost, outside Starlette's error
middleware, so the door's refusals, 404s and even a crash's 500 carry it too; a streamed
answer costs one type check per chunk and nothing else.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from typing import Any, TextIO

REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:+/=@-]{1,128}")
_STARTS = ("http.response.start", "websocket.http.response.start")

request_log = logging.getLogger("jisu.access")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def chosen_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-Id if it sent a sane one, else a new id."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SANE_ID.fullmatch(value) else new_request_id()
    return new_request_id()


class RequestIds:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = chosen_request_id(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER, request_id.encode())
        started = time.monotonic()
        status: int | None = None

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] in _STARTS or message["type"] == "websocket.accept":
                status = message.get("status", 101)  # an accepted WebSocket: 101 Switching Protocols
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _log_request(scope, status, time.monotonic() - started, request_id)


def _log_request(scope, status: int | None, seconds: float, request_id: str) -> None:
    """One line when the request is over (a stream: when its last chunk has gone)."""
    if not request_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    who = f"{client[0]}:{client[1]}" if client else "-"
    method = scope.get("method", "WS")
    request_log.info('%s "%s %s" %s %.3fs %s', who, method, scope["path"], status or "-", seconds, request_id)


def log_requests(stream: TextIO = sys.stderr) -> None:
    """`jisu serve` writes the request log to stderr, beside its other lines (once per
    process, however many servers it builds)."""
    if request_log.handlers:
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("jisu: %(message)s"))
    request_log.addHandler(handler)
    request_log.setLevel(logging.INFO)
