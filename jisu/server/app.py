"""create_app(): the FastAPI application around a loaded Runtime."""

from __future__ import annotations

import time
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from jisu import __version__
from jisu.scheduler.runtime import Runtime
from jisu.server.errors import ApiError, install_error_handlers
from jisu.server.metrics import Metrics
from jisu.server.routes import router as api_router
from jisu.server.serving import Serving
from jisu.server.websocket import router as socket_router

MAX_BODY_BYTES = 8 << 20  # a long document fits; a runaway upload does not


def web_dir():
    return resources.files("jisu") / "web"


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="jisu", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.serving = Serving(runtime, Metrics(runtime.scheduler.stats))
    app.state.started_at = int(time.time())
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            api = ApiError(413, f"Request body over {MAX_BODY_BYTES >> 20} MB.", code="request_too_large")
            return JSONResponse(api.body, status_code=413)
        return await call_next(request)

    app.include_router(api_router)
    app.include_router(socket_router)

    static = web_dir()
    if (static / "index.html").is_file():
        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(str(static / "index.html"), headers={"Cache-Control": "no-cache"})

        app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
