"""Browser mode's files: the model, split for the page, prepared when a page first asks.

A page that runs the model itself (wllama, in `web/device.js`) fetches `/web-model/manifest.json`
and then each part under `/web-model/<id>/<file>`. Preparing the parts can mean fetching or
quantizing the browser's format and always means writing ~0.5 GB, so it happens on a worker
thread after the first request, never at start: a server nobody uses in browser mode pays
nothing. Until the parts are ready the manifest route answers 202 with the progress.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from jisu.models.shards import DEFAULT_PART_BYTES, BrowserModel, prepare_browser_model
from jisu.server.errors import ApiError, error_responses

# Parts are named by the model's content (the id), so a browser may keep them for good.
IMMUTABLE = "public, max-age=31536000, immutable"


def wllama_installed(web: Path) -> bool:
    """Whether scripts/fetch_wllama.sh put wllama's WebAssembly builds in place (it needs npm)."""
    wllama = web / "vendor" / "wllama"
    return all((wllama / name).is_file() for name in ("index.js", "wllama.wasm", "compat/wllama.wasm"))


@dataclass(frozen=True)
class ModelFile:
    """The GGUF file the browser gets, with the names users see."""

    path: Path
    name: str
    quant: str


class BrowserModelFiles:
    """Prepares the browser's parts once, on a thread; tells how far it is."""

    def __init__(self, locate: Callable[[], ModelFile], home: Path, part_bytes: int = DEFAULT_PART_BYTES,
                 announce: Callable[[str], None] = lambda line: None) -> None:
        self._locate = locate  # may fetch or quantize: runs on the preparing thread
        self._announce = announce  # one line for the server's log at each stage
        self._home = home
        self._part_bytes = part_bytes
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._folder: Path | None = None
        self._manifest: BrowserModel | None = None
        self._stage = "idle"  # idle, locating, splitting, ready, failed
        self._done = 0
        self._total = 0
        self._error = ""

    def status(self) -> dict:
        with self._lock:
            if self._manifest is not None:
                return {"status": "ready", "manifest": self._manifest.to_json()}
            if self._stage == "failed":
                return {"status": "failed", "error": self._error}
            return {"status": "preparing", "stage": self._stage, "done": self._done, "total": self._total}

    def start(self) -> None:
        """Begin preparing unless it is under way or done; a failed attempt is tried again."""
        with self._lock:
            if self._manifest is not None or (self._thread and self._thread.is_alive()):
                return
            self._stage, self._done, self._total, self._error = "locating", 0, 0, ""
            self._thread = threading.Thread(target=self._prepare, name="jisu-browser-model", daemon=True)
            self._thread.start()

    def part_path(self, model_id: str, file: str) -> Path | None:
        """The path of a part the manifest lists, else None (nothing else is ever served)."""
        with self._lock:
            manifest, folder = self._manifest, self._folder
        if manifest is None or folder is None or model_id != manifest.id:
            return None
        if not any(part.file == file for part in manifest.parts):
            return None
        return folder / file

    def _progress(self, done: int, total: int) -> None:
        with self._lock:
            self._done, self._total = done, total

    def _prepare(self) -> None:
        try:
            self._announce("browser mode: a page asked for the model; preparing it")
            model = self._locate()
            with self._lock:
                self._stage = "splitting"
            folder, manifest = prepare_browser_model(model.path, model.name, model.quant, self._home,
                                                     self._part_bytes, self._progress)
            with self._lock:
                self._folder, self._manifest, self._stage = folder, manifest, "ready"
            self._announce(f"browser mode: {manifest.name} ({manifest.quant}, {manifest.size // 10**6} MB "
                           f"in {len(manifest.parts)} parts) is ready for pages")
        except Exception as error:  # noqa: BLE001 - any failure is told to the page, not lost
            with self._lock:
                self._stage, self._error = "failed", str(error) or type(error).__name__
            self._announce(f"browser mode: the model could not be prepared: {self._error}")


router = APIRouter()


def _files(request: Request) -> BrowserModelFiles:
    files = getattr(request.app.state, "browser_model", None)
    if files is None:
        raise ApiError(404, "Browser mode is off on this server.", code="browser_mode_off")
    return files


@router.get("/web-config.json", include_in_schema=False)
async def web_config(request: Request) -> JSONResponse:
    """The page asks this first: served by `jisu serve`, so server mode is there too
    (`jisu export-web` writes the same file with "server": false)."""
    browser_mode = getattr(request.app.state, "browser_model", None) is not None
    return JSONResponse({"server": True, "browser_mode": browser_mode}, headers={"Cache-Control": "no-cache"})


PREPARING = {202: {"description": "Still preparing the parts: {status, stage, done, total} (bytes); ask again"}}


@router.get("/web-model/manifest.json", responses={**PREPARING, **error_responses(401, 403, 404, 503)},
            summary="Browser mode's model")
async def web_model_manifest(request: Request) -> JSONResponse:
    """The model for pages that run it themselves: 200 with the parts to fetch once they are
    ready, 202 with the progress while the server prepares them (the first request starts it)."""
    files = _files(request)
    files.start()
    status = files.status()
    if status["status"] == "ready":
        return JSONResponse(status["manifest"], headers={"Cache-Control": "no-cache"})
    if status["status"] == "failed":
        raise ApiError(503, f"The model for the browser could not be prepared: {status['error']}",
                       type_="server_error", code="browser_model_failed")
    return JSONResponse(status, status_code=202, headers={"Cache-Control": "no-cache", "Retry-After": "1"})


@router.get("/web-model/{model_id}/{file}", include_in_schema=False)
async def web_model_part(model_id: str, file: str, request: Request) -> FileResponse:
    path = _files(request).part_path(model_id, file)
    if path is None:
        raise ApiError(404, f"No part {file!r} of model {model_id!r} here.", code="not_found")
    # Range requests (resuming a broken download) are answered by FileResponse itself.
    return FileResponse(path, media_type="application/octet-stream", headers={"Cache-Control": IMMUTABLE})
