"""For the CLI's unit tests: run `jisu ...` in the test's own process (no interpreter start-up
per call) with stdin from a string, as a user would run it (through jisu.cli.main.main, exit
code and all), against jisu's own server on the fake engine."""

from __future__ import annotations

import http.server
import io
import json
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest

from fakes import FakeEngine, fake_runtime
from jisu.cli.main import main
from jisu.runtime import Runtime
from jisu.server.access import AccessPolicy
from jisu.server.app import create_app
from jisu.types import SamplingParams
from live_server import free_port, serving_in_thread


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def error_line(self) -> str:
        """The one line a failing command prints (and the test fails if there are more)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, f"one line on stderr, got: {self.err!r}"
        assert "Traceback" not in self.err
        return lines[0]


def run_jisu(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str, stdin: str = "",
             terminal: bool = False) -> Ran:
    """`terminal`: stdin says it is one (what the user types is `stdin`); else it is a pipe, as
    in scripts."""
    capsys.readouterr()  # only this command's output
    monkeypatch.setattr(sys, "argv", ["jisu", *args])
    typed = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8", newline="\n")  # with .buffer, as sys.stdin
    if terminal:
        typed.isatty = lambda: True
    monkeypatch.setattr(sys, "stdin", typed)
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return Ran(exited.value.code, out, err)


class RecordingEngine(FakeEngine):
    """The fake engine, keeping each request's sampling parameters and prompt text: what the
    CLI asked for, as the engine received it (through the server or in-process)."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.requests: list[tuple[SamplingParams, str]] = []

    def new_sampler(self, params: SamplingParams, prompt_tokens):
        self.requests.append((params, self.tokenizer.detokenize(prompt_tokens)))
        return super().new_sampler(params, prompt_tokens)


@contextmanager
def fake_jisu_serve(engine: FakeEngine, access: AccessPolicy | None = None) -> Iterator[tuple[str, Runtime]]:
    """(URL, runtime) of jisu's own app and uvicorn server on the fake engine, in a thread."""
    with fake_runtime(engine, parallel=2) as runtime:
        with serving_in_thread(create_app(runtime, access)) as (url, _):
            yield url, runtime


@pytest.fixture
def nothing_at_the_default_address(monkeypatch):
    """Discovery probes a port where nothing listens, whatever runs on this machine's 8080;
    JISU_URL and JISU_API_KEY from the environment do not leak into the test."""
    monkeypatch.setattr("jisu.cli.discovery.DEFAULT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("JISU_URL", raising=False)
    monkeypatch.delenv("JISU_API_KEY", raising=False)


@contextmanager
def foreign_http_server(jisu_like: bool = False, stream: list[str] | None = None):
    """An HTTP server on a free port: without jisu_like it is some other program (404 for
    everything); with it, it answers /health and /v1/models as jisu does, creates an empty
    conversation, and sends `stream`'s SSE lines for a chat, then hangs up without ending the
    response."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def do_GET(self):
            if jisu_like and self.path == "/health":
                self._json({"status": "ok", "model": "Fake"})
            elif jisu_like and self.path == "/v1/models":
                self._json({"data": [{"id": "fake", "name": "Fake", "quantization": "q4_0", "context_size": 2048}]})
            else:
                self.send_error(404)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not jisu_like:
                self.send_error(404)
                return
            if self.path == "/v1/conversations":
                self._json({"id": "conv_fake", "title": "", "system": None, "created_at": 0.0, "updated_at": 0.0,
                            "active_leaf_id": None, "messages": []})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for line in stream or []:
                self.wfile.write(f"{line}\n\n".encode())
            self.wfile.flush()

        def _json(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
