"""Bounded input: how much a client may send, and how slowly, before it is cut off.

Two layers, because they see different things:
- `LimitedHttpToolsProtocol` (the HTTP connection, below ASGI): header count and size, and
  a deadline for the request head, so a client that opens connections and sends nothing, or
  dribbles headers (slowloris), holds no connection for long.
- `BodyLimit` (ASGI): the body is counted as it arrives, however it arrives (Content-Length
  or chunked), with a deadline between pieces; over the limit is a 413 and the connection
  is closed, so the rest of an upload is never read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jisu.server.errors import error_body, error_body_for
from jisu.server.request_id import new_request_id

MAX_BODY_BYTES = 8 << 20  # a long document fits; a runaway upload does not
# A conversation export to import (ChatGPT's conversations.json grows with years of chats). Read
# whole and parsed into Python objects several times its size, so still bounded.
MAX_IMPORT_BYTES = 32 << 20
MAX_HEADER_COUNT = 100
MAX_HEADER_BYTES = 64 << 10  # request line and headers together
HEADER_TIMEOUT_S = 10.0  # from the first byte (or the connection) to the end of the headers
BODY_TIMEOUT_S = 30.0  # longest pause while a body is being sent
METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class _HeadTooLarge(Exception):
    pass


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools connection with limits on the request head."""

    on_refused: Callable[[str], None] = staticmethod(lambda reason: None)

    @classmethod
    def reporting_to(cls, on_refused: Callable[[str], None]) -> type[LimitedHttpToolsProtocol]:
        """The protocol class for uvicorn, counting its refusals (uvicorn makes one per
        connection, so what it needs to know is on the class)."""
        return type(cls.__name__, (cls,), {"on_refused": staticmethod(on_refused)})

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = self._head_count = 0
        self._head_too_large = False
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_timed_out)

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._head_count = 0
        if self._head_timer is None:  # the next request on a kept-alive connection
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value), 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def _count_head(self, size: int, headers: int) -> None:
        self._head_bytes += size
        self._head_count += headers
        if self._head_bytes > MAX_HEADER_BYTES or self._head_count > MAX_HEADER_COUNT:
            self._head_too_large = True
            raise _HeadTooLarge()  # httptools stops parsing; uvicorn calls send_400_response

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        self._cancel_head_timer()
        self.on_refused("headers_too_large")
        _write_and_close(self.transport, 431, "Request Header Fields Too Large",
                         f"At most {MAX_HEADER_COUNT} headers and {MAX_HEADER_BYTES >> 10} KB of them.",
                         "headers_too_large")

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered (pipelining); its own limits apply
        self.on_refused("request_timeout")
        _write_and_close(self.transport, 408, "Request Timeout",
                         f"The request head did not arrive within {HEADER_TIMEOUT_S:g} s.", "request_timeout")

    def _cancel_head_timer(self) -> None:
        timer, self._head_timer = getattr(self, "_head_timer", None), None
        if timer is not None:
            timer.cancel()


def _write_and_close(transport, status: int, reason: str, message: str, code: str) -> None:
    body = json.dumps(error_body(message, code=code)).encode()
    # The head never reached ASGI: a new id, as every response has one.
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nx-request-id: {new_request_id()}\r\n"
            f"connection: close\r\n\r\n").encode()
    transport.write(head + body)
    transport.close()


class BodyLimit:
    """Reads a request body up to `max_bytes` (or the limit `path_limits` gives its path), then
    hands it on whole (every route of ours parses JSON, which needs the whole body anyway)."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES,
                 on_refused: Callable[[str], None] = lambda reason: None,
                 path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refused = on_refused
        self.path_limits = path_limits or {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(scope, send, 413, "request_too_large", _too_large(max_bytes))
            return
        pieces, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), BODY_TIMEOUT_S)
            except asyncio.TimeoutError:
                await self._refuse(scope, send, 408, "request_timeout",
                                   f"The request body stalled for {BODY_TIMEOUT_S:g} s.")
                return
            if message["type"] == "http.disconnect":
                return  # the client left before sending all of it: nobody to answer
            size += len(message.get("body", b""))
            if size > max_bytes:
                await self._refuse(scope, send, 413, "request_too_large", _too_large(max_bytes))
                return
            pieces.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(pieces), "more_body": False}
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return whole
            return await receive()  # from now on only http.disconnect can come

        await self.app(scope, replay, send)

    async def _refuse(self, scope, send, status: int, code: str, message: str) -> None:
        self.on_refused(code)
        body = json.dumps(error_body_for(scope["path"], message, code=code)).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})  # the rest of the upload is never read
        await send({"type": "http.response.body", "body": body})


def _too_large(max_bytes: int) -> str:
    return f"The request body is over {max_bytes >> 20} MB."
