"""A scripted stand-in for the server's /v1/ws, via Playwright's WebSocket routing.

The page, its static files and /v1/models still come from the real server; only the socket
is faked, so a test can produce what the model will not do on cue: a dropped connection, a
busy server, a queue position, or an answer containing HTML.
"""

from __future__ import annotations

import json
from typing import Callable


class FakeSocket:
    def __init__(self, page, refuse_first: int = 0) -> None:
        self.sockets = []
        self.received: list[dict] = []
        self.refuse = refuse_first  # connections to close straight away (server unreachable)
        self.on_chat: Callable | None = None  # on_chat(fake, message) answers a chat request
        page.route_web_socket("**/v1/ws", self._connect)

    def _connect(self, ws) -> None:
        if self.refuse > 0:
            self.refuse -= 1
            ws.close(code=1011, reason="server unreachable (fake)")
            return
        self.sockets.append(ws)
        ws.on_message(lambda raw: self._message(raw))

    def _message(self, raw) -> None:
        message = json.loads(raw)
        self.received.append(message)
        if message.get("type") == "chat" and self.on_chat:
            self.on_chat(self, message)

    def send(self, event: dict) -> None:
        self.sockets[-1].send(json.dumps(event, ensure_ascii=False))

    def answer(self, text: str, piece: int = 5, completion_tokens: int | None = None) -> None:
        """Stream `text` in small pieces, then `done`, like the real server."""
        for start in range(0, len(text), piece):
            self.send({"type": "token", "text": text[start:start + piece]})
        tokens = completion_tokens or max(1, len(text) // 3)
        self.send({
            "type": "done", "finish_reason": "stop",
            "usage": {"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": 20 + tokens},
            "timings": {"time_to_first_token_ms": 120.0, "tokens_per_second": 30.0, "completion_tokens": tokens},
        })

    def close(self) -> None:
        self.sockets[-1].close(code=1012, reason="server restarting (fake)")

    def chats(self) -> list[dict]:
        return [m for m in self.received if m.get("type") == "chat"]
