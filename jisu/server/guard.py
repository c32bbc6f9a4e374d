"""The ASGI middleware in front of every route: Host, Origin, API key, CORS, baseline headers.

Pure ASGI (no BaseHTTPMiddleware): it looks at the headers once, then either answers itself
with an error (OpenAI's shape; Ollama's on /api/...) or hands the untouched request on, so a
streamed answer costs nothing extra per token. WebSocket handshakes get the same Host and
Origin checks (browsers apply no CORS to WebSockets: this check is the only thing stopping a
foreign page).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from jisu.server.access import LOCAL_USER, AccessPolicy, normalize_origin
from jisu.server.docs import DOCS_PATH
from jisu.server.errors import error_body_for

# Reachable without a key: the health check (load balancers, `docker HEALTHCHECK`) and the
# chat page with its files (the page itself asks for the key).
OPEN_PATHS = frozenset({"/health", "/", "/favicon.ico", "/web-config.json"})
OPEN_PREFIXES = ("/static/",)
PAGE_PATHS = frozenset({"/"})
PAGE_PREFIXES = ("/static/",)
# The page runs only its own scripts; model output it renders can never load anything.
# Browser mode compiles the vendored WebAssembly ('wasm-unsafe-eval' allows only that, not
# eval) and starts wllama's workers from blob: URLs it makes from its own code.
PAGE_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
            "style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# The API's Swagger UI page (docs.py) loads only jisu's own files and talks only to jisu.
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# Cross-origin isolation: without it a page gets no SharedArrayBuffer, so wllama runs on one
# thread. Everything the page loads is its own, so requiring CORP of other origins costs nothing.
ISOLATION_HEADERS = [
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
BASELINE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # the page's URL may carry its key (#key=...)
]
CORS_ALLOW_HEADERS = (b"authorization, content-type, x-requested-with, x-request-id, openai-organization, "
                      b"openai-project")
CORS_EXPOSE_HEADERS = b"x-request-id"  # a listed origin's script may read the id of its request
CORS_MAX_AGE = b"600"
WEBSOCKET_KEY_PROTOCOL = "jisu-key."  # Sec-WebSocket-Protocol: jisu, jisu-key.<KEY>
WEBSOCKET_PROTOCOL = "jisu"


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    # Repeated headers: the first one counts (Host and Origin may not repeat anyway).
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


class Guard:
    def __init__(self, app, policy: AccessPolicy, on_refused: Callable[[str], None] = lambda reason: None) -> None:
        self.app = app
        self.policy = policy
        self.on_refused = on_refused  # metrics: every refusal, by reason

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host, origin = headers.get("host"), headers.get("origin")
        if not self.policy.host_allowed(host):
            await self._refuse(scope, send, 403, "forbidden_host",
                               f"Host '{host}' is not allowed; start jisu with --allowed-host {host} "
                               "if that name really is this server.")
            return
        if not self.policy.origin_allowed(origin, host):
            await self._refuse(scope, send, 403, "forbidden_origin",
                               f"Requests from the web page at {origin} are not allowed; "
                               "start jisu with --cors-origin to allow that origin.")
            return
        cors_origin = normalize_origin(origin) if self.policy.is_cors_origin(origin) else None
        if scope["type"] == "http" and cors_origin and scope["method"] == "OPTIONS" \
                and "access-control-request-method" in headers:
            await self._answer_preflight(send, origin)
            return
        state = scope.setdefault("state", {})
        if not self._authenticate(scope, headers, state):
            await self._refuse(scope, send, 401, "invalid_api_key",
                               "Missing or wrong API key: send 'Authorization: Bearer KEY'.",
                               [(b"www-authenticate", b'Bearer realm="jisu"')])
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        page = scope["path"] in PAGE_PATHS or scope["path"].startswith(PAGE_PREFIXES)
        docs = scope["path"] == DOCS_PATH or scope["path"].startswith(DOCS_PATH + "/")
        await self.app(scope, receive, self._with_headers(send, page, docs, origin if cors_origin else None))

    def _authenticate(self, scope, headers: dict[str, str], state: dict[str, Any]) -> bool:
        """Set state['user']; False only when the request must be refused now. A WebSocket
        without a key in its handshake may still send it as its first message (browsers
        cannot set headers on a WebSocket): state['user'] stays None for the handler."""
        if not self.policy.needs_key:
            state["user"] = LOCAL_USER
            return True
        if is_open_path(scope["path"]) and scope["type"] == "http":
            state["user"] = None
            return True
        presented = headers.get("authorization")
        user = self.policy.user_for_authorization(presented)
        if scope["type"] == "websocket":
            offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
            keys = [p[len(WEBSOCKET_KEY_PROTOCOL):] for p in offered if p.startswith(WEBSOCKET_KEY_PROTOCOL)]
            if keys:
                presented = presented or keys[0]
                user = user or self.policy.user_for_key(keys[0])
            state["user"] = user
            return user is not None or not presented  # a wrong key is refused at once
        state["user"] = user
        return user is not None

    async def _refuse(self, scope, send, status: int, code: str, message: str,
                      extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.on_refused(code)
        type_ = "authentication_error" if status == 401 else "permission_error"
        body = json.dumps(error_body_for(scope["path"], message, type_, code=code), ensure_ascii=False).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   *BASELINE_HEADERS, *(extra_headers or [])]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # the server cannot send a denial body: closing before accept is a 403
            await send({"type": "websocket.close", "code": 1008})

    async def _answer_preflight(self, send, origin: str) -> None:
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
            (b"access-control-allow-headers", CORS_ALLOW_HEADERS),
            (b"access-control-max-age", CORS_MAX_AGE),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _with_headers(send, page: bool, docs: bool, cors_origin: str | None):
        extra = list(BASELINE_HEADERS)
        if page:
            extra += [(b"content-security-policy", PAGE_CSP.encode()), *ISOLATION_HEADERS]
        if docs:
            extra.append((b"content-security-policy", DOCS_CSP.encode()))
        if cors_origin:  # never "*": the answer goes to exactly the origin that was listed
            extra += [(b"access-control-allow-origin", cors_origin.encode("latin-1")),
                      (b"access-control-expose-headers", CORS_EXPOSE_HEADERS), (b"vary", b"Origin")]

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_headers
