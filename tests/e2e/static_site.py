"""A plain static web server for `jisu export-web`'s folder, as a user would put up: the
standard library's http.server with the two isolation headers its README names. It also
answers Range requests (as nginx or Caddy do), logs what it is asked for, and can cut one
download off halfway to prove the page recovers."""

from __future__ import annotations

import functools
import http.server
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


@dataclass
class SiteLog:
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    cut_next_part_after: int | None = None  # bytes; the next model part stops there, once

    def paths(self, containing: str) -> list[str]:
        return [path for path, _ in self.requests if containing in path]


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm"}

    def __init__(self, *args, site: SiteLog, isolated: bool, **kwargs):
        self.site = site
        self.isolated = isolated
        super().__init__(*args, **kwargs)

    def end_headers(self):
        if self.isolated:
            for name, value in ISOLATION.items():
                self.send_header(name, value)
        super().end_headers()

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.site.requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.name.endswith(".gguf") or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        start = 0
        requested = self.headers.get("Range", "")
        if requested.startswith("bytes=") and requested.endswith("-"):
            start = int(requested[len("bytes="):-1])
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        body = data[start:]
        cut, self.site.cut_next_part_after = self.site.cut_next_part_after, None
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)  # the network drops: the page sees a broken body
            return
        self.wfile.write(body)


@contextmanager
def static_site(folder: Path, isolated: bool = True):
    """Serve `folder` on a free loopback port; yields (url, log)."""
    site = SiteLog()
    handler = functools.partial(_Handler, directory=str(folder), site=site, isolated=isolated)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", site
    finally:
        server.shutdown()
        server.server_close()
