"""The servers the benchmarks start: jisu, llama.cpp's llama-server (built by
build_llama_tools.sh from the llama.cpp jisu's wheel vendors) and llama-cpp-python's server;
and what we read of them from /proc while they run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import httpx

BENCHMARKS = Path(__file__).resolve().parent
ENGINE_THREAD = "jisu-engine"  # jisu's engine thread and llama.cpp's compute threads it starts
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(command: list[str], port: int, log_name: str, env: dict | None = None):
    """Start a server, wait until it answers /v1/models, yield (url, pid), stop it."""
    log = open(Path("/tmp") / f"bench-{log_name}.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{log_name} exited; see /tmp/bench-{log_name}.log")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{log_name} did not start")
            time.sleep(0.5)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def jisu_server(model: str, threads: int, parallel: int, ctx: int, extra: list[str] = (), env: dict | None = None):
    """jisu serve on a JISU_HOME of its own (the model is given by path): the conversations a
    benchmark stores never reach the machine's real history."""
    port = free_port()
    env = {"JISU_HOME": tempfile.mkdtemp(prefix="bench-jisu-home-"), **(env or {})}
    return server([sys.executable, "-m", "jisu.cli", "serve", "--model", model, "--port", str(port),
                   "--threads", str(threads), "--parallel", str(parallel), "--ctx-size", str(ctx), *extra],
                  port, f"jisu-p{parallel}", env)


@cache
def llama_tools() -> Path:
    """The folder holding llama-server, llama-bench and llama-batched-bench (built once)."""
    output = subprocess.run([str(BENCHMARKS / "build_llama_tools.sh")], capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable})
    if output.returncode != 0:
        raise RuntimeError(f"could not build llama.cpp's tools:\n{output.stderr[-2000:]}")
    return Path(output.stdout.strip().splitlines()[-1])


def llama_server(model: str, threads: int, parallel: int, ctx: int):
    """llama-server as people run it, with the same slots, context per slot and threads."""
    port = free_port()
    return server([str(llama_tools() / "llama-server"), "--model", model, "--port", str(port),
                   "--threads", str(threads), "--threads-batch", str(threads), "--parallel", str(parallel),
                   "--ctx-size", str(ctx * parallel), "--no-webui"], port, f"llama-server-p{parallel}")


def llama_cpp_server(model: str, threads: int, ctx: int):
    port = free_port()
    return server([sys.executable, "-m", "llama_cpp.server", "--model", model, "--port", str(port),
                   "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(ctx)],
                  port, "llama_cpp_server")


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def cpu_seconds_by_side(pid: int) -> tuple[float, float]:
    """(engine, everything else) CPU seconds a jisu process has used so far: the engine is the
    thread named jisu-engine and llama.cpp's compute threads it started (they inherit the
    name); the rest is the event loop and whatever else serves HTTP."""
    engine = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        if name == ENGINE_THREAD:
            engine += seconds
        else:
            other += seconds
    return engine, other
