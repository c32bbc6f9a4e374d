"""Prove the README's first command: `jisu serve` from a plain install starts, answers, stops.

Standard library only, so it runs against a venv that has no test tools:

    python scripts/smoke_serve.py VENV_DIR

Starts VENV_DIR/bin/jisu serve on a free port with the default model (which fetches or falls
back exactly as a new user's first start does), waits for /health, loads the page, asks one
question, has browser mode's model prepared and fetches a part of it, then sends SIGTERM and
expects exit code 0. Exits non-zero with the server's log on any failure.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

STARTUP_TIMEOUT_S = 900  # a first start on a fresh machine fetches and converts ~0.5 GB


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def ask(base: str, question: str) -> dict:
    body = json.dumps({"messages": [{"role": "user", "content": question}], "max_tokens": 24,
                       "temperature": 0}).encode()
    request = urllib.request.Request(f"{base}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def check_browser_mode(base: str) -> str | None:
    """Browser mode from a plain install: wllama's WebAssembly is served as such, and the
    server prepares the model's parts for pages (fetching or quantizing the browser's format,
    then splitting it). Returns what is wrong, or None."""
    status, wasm = get(f"{base}/static/vendor/wllama/wllama.wasm")
    if status != 200 or not wasm.startswith(b"\0asm"):
        return f"wllama's WebAssembly is not served (HTTP {status})"
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_TIMEOUT_S:
        try:
            status, body = get(f"{base}/web-model/manifest.json", timeout=30)
        except urllib.error.HTTPError as error:  # 503: the server says why it could not
            return f"browser mode's model: HTTP {error.code} {error.read()[:300]!r}"
        if status == 200:
            manifest = json.loads(body)
            part = manifest["parts"][-1]
            status, data = get(f"{base}/web-model/{manifest['id']}/{part['file']}", timeout=60)
            if status != 200 or len(data) != part["size"]:
                return f"a part of the browser's model did not download whole (HTTP {status})"
            print(f"smoke: browser mode's model ready after {time.monotonic() - started:.1f} s: "
                  f"{manifest['quant']}, {len(manifest['parts'])} parts, {manifest['size'] // 10**6} MB")
            return None
        time.sleep(1)
    return f"the browser's model was not ready within {STARTUP_TIMEOUT_S} s"


def main(venv: Path) -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w+", prefix="jisu-smoke-", suffix=".log", delete=False)
    server = subprocess.Popen([str(venv / "bin" / "jisu"), "serve", "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)

    def fail(reason: str) -> int:
        if server.poll() is None:
            server.kill()
        log.flush()
        print(f"smoke: FAILED: {reason}\n--- server log ---\n{Path(log.name).read_text()[-4000:]}")
        return 1

    started = time.monotonic()
    while True:
        if server.poll() is not None:
            return fail(f"jisu serve exited with {server.returncode} before it was healthy")
        try:
            if get(f"{base}/health")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() - started > STARTUP_TIMEOUT_S:
            return fail(f"not healthy within {STARTUP_TIMEOUT_S} s")
        time.sleep(0.5)
    print(f"smoke: jisu serve healthy after {time.monotonic() - started:.1f} s")

    status, page = get(f"{base}/")
    if status != 200 or b"<html" not in page:
        return fail(f"the chat page did not load (HTTP {status})")
    try:
        answer = ask(base, "用一句话介绍北京。")
    except OSError as error:
        return fail(f"the chat request failed: {error}")
    text = answer["choices"][0]["message"]["content"]
    if not text.strip():
        return fail(f"empty answer: {answer}")
    print(f"smoke: answered {answer['usage']['completion_tokens']} tokens: {text.strip()[:60]!r}")

    problem = check_browser_mode(base)
    if problem:
        return fail(problem)

    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        return fail("did not stop within 30 s of SIGTERM")
    if code != 0:
        return fail(f"exit code {code} after SIGTERM (expected 0)")
    print("smoke: stopped cleanly on SIGTERM (exit 0)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/smoke_serve.py VENV_DIR")
    sys.exit(main(Path(sys.argv[1])))
