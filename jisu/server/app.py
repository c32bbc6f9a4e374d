"""create_app(): the FastAPI application around a loaded Runtime."""

from __future__ import annotations

import mimetypes
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from jisu import __version__
from jisu.runtime import Runtime
from jisu.server.access import AccessPolicy
from jisu.server.browser import BrowserModelFiles
from jisu.server.browser import router as browser_router
from jisu.server.conversations import IMPORT_PATH
from jisu.server.conversations import router as conversations_router
from jisu.server.docs import router as docs_router
from jisu.server.errors import install_error_handlers, without_validation_422
from jisu.server.guard import Guard
from jisu.server.history import ServerHistory
from jisu.server.limits import MAX_BODY_BYTES, MAX_IMPORT_BYTES, BodyLimit
from jisu.server.metrics import Metrics
from jisu.server.ollama import router as ollama_router
from jisu.server.request_id import RequestIds
from jisu.server.routes import router as api_router
from jisu.server.serving import Serving
from jisu.server.tokens import router as tokens_router
from jisu.server.websocket import router as socket_router


# WebAssembly compiles while it streams in only when served as application/wasm; some
# systems' MIME tables do not know the type.
mimetypes.add_type("application/wasm", ".wasm")


def web_dir():
    return resources.files("jisu") / "web"


class _App(FastAPI):
    def build_middleware_stack(self):
        # Request ids wrap everything, Starlette's own error middleware included, so even
        # a crash's 500 names its request (add_middleware only reaches inside it).
        return RequestIds(super().build_middleware_stack())


@asynccontextmanager
async def _lifespan(app: FastAPI):
    """The conversation store is open while the server runs: opened (and recovered) before the
    first request, closed after the last answer's record is written."""
    app.state.history.open()
    try:
        yield
    finally:
        await app.state.history.close()


def create_app(runtime: Runtime, access: AccessPolicy | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               browser_model: BrowserModelFiles | None = None, history_path: Path | None = None,
               max_import_bytes: int = MAX_IMPORT_BYTES) -> FastAPI:
    """The app; `access` defaults to what a loopback server needs: no keys, local names.
    `browser_model` is what pages running the model themselves fetch (None: browser mode off).
    `history_path`: the conversation store (default JISU_HOME/history.db), open while the app
    runs (its lifespan: uvicorn's start and stop, or a TestClient used as a context manager)."""
    # /docs is jisu's own (docs.py): FastAPI's loads Swagger UI from a CDN.
    app = _App(title="jisu", version=__version__, docs_url=None, redoc_url=None, lifespan=_lifespan)
    metrics = Metrics(runtime.stats)
    app.state.serving = Serving(runtime, metrics)
    app.state.history = ServerHistory(history_path)
    app.state.access = access or AccessPolicy.build()
    app.state.started_at = int(time.time())
    app.state.browser_model = browser_model
    install_error_handlers(app)
    without_validation_422(app)
    # Outermost first: who may ask (Guard) before how much they may send (BodyLimit).
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, on_refused=metrics.refused,
                       path_limits={IMPORT_PATH: max_import_bytes})
    app.add_middleware(Guard, policy=app.state.access, on_refused=metrics.refused)

    app.include_router(api_router)
    app.include_router(conversations_router)
    app.include_router(tokens_router)
    app.include_router(ollama_router)
    app.include_router(socket_router)
    app.include_router(browser_router)
    app.include_router(docs_router)

    static = web_dir()
    if (static / "index.html").is_file():
        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(str(static / "index.html"), headers={"Cache-Control": "no-cache"})

        app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
