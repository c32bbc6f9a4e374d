"""Start a real `jisu serve` process for tests and stop it afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"  # git-ignored: server logs, screenshots


def metric_value(url: str, sample: str, headers: dict | None = None) -> float:
    """One sample of the server's /metrics, e.g. 'jisu_requests_total{endpoint="chat",status="ok"}';
    0 while the server has not counted it yet."""
    for line in httpx.get(f"{url}/metrics", headers=headers).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


def refusal_count(url: str, reason: str) -> float:
    """How many requests the server at `url` refused for `reason`, from its /metrics."""
    return metric_value(url, f'jisu_refusals_total{{reason="{reason}"}}')


def served_model(url: str, headers: dict | None = None) -> str:
    """The id the server answers with (its /v1/models): the alias of a known model, else the
    file's name, so tests follow whichever GGUF file JISU_TEST_MODEL chose."""
    return httpx.get(f"{url}/v1/models", headers=headers).json()["data"][0]["id"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        """Resident memory of the server process now."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS for the server process")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server and wait for it; returns its exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        return self.process.returncode


@contextmanager
def launched_server(model: Path, *extra_args: str, name: str = "server", startup_timeout: float = 180,
                    env: dict[str, str] | None = None, host: str = "127.0.0.1", headers: dict | None = None):
    """Yield a healthy `jisu serve` as a LiveServer; its output goes to test-artifacts/."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{name}-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jisu.cli", "serve", "--model", str(model), "--port", str(port),
             "--host", host, *extra_args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jisu serve exited early:\n{server.log()[-3000:]}")
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jisu serve not healthy in time:\n{server.log()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        server.stop(timeout=15)


@contextmanager
def running_server(model: Path, *extra_args: str, **options):
    """Yield the base URL of a healthy `jisu serve` (see launched_server)."""
    with launched_server(model, *extra_args, **options) as server:
        yield server.url


@contextmanager
def serving_in_thread(app, grace_s: float = 2.0):
    """Yield (base URL, server): `app` served by the same uvicorn server `jisu serve` runs
    (connection limits, graceful stop), in a thread, for tests that need a real socket (body
    limits, slow clients, WebSocket frame sizes) without loading a model."""
    import threading

    from jisu.cli.serve import bind
    from jisu.server.runner import build_server

    sock = bind("127.0.0.1", 0)
    server = build_server(app, grace_s)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the in-thread server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
