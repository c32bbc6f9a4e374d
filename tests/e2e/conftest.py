"""Fixtures for the browser tests: a real `jisu serve` with the stand-in model, the same app on
the fake engine of the unit tests (fake_server: the real page, socket and conversation store,
without a model's CPU), and Debian's chromium driven by Playwright (a browser download via
`playwright install` is not available here, so the system chromium is launched by path).

The real servers are started once per session and keep the page's chats, so each test starts
with their history emptied; every test gets a fresh browser context, which means an empty
IndexedDB and localStorage.
"""

from __future__ import annotations

import json
import os
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from live_server import running_server, serving_in_thread
CHROMIUM = os.environ.get("JISU_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
@dataclass
class Server:
    url: str

    def models(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/v1/models", timeout=10) as response:
            return json.load(response)


def delete_history(url: str) -> None:
    """Delete every conversation the server keeps for the local user."""
    while ids := [item["id"] for item in httpx.get(f"{url}/v1/conversations", params={"limit": 100}).json()["data"]]:
        for conversation_id in ids:
            httpx.delete(f"{url}/v1/conversations/{conversation_id}").raise_for_status()


@pytest.fixture(autouse=True)
def empty_history(request):
    """The session's servers keep every test's chats: each test starts without the others'."""
    for name in ("server", "small_server"):
        if name in request.fixturenames:
            delete_history(request.getfixturevalue(name).url)


@pytest.fixture
def fake_server(tmp_path):
    """fake_server(answer=None, step_delay_s=0.0, ctx_size=2048, history_path=None, keys=None)
    -> a Server: jisu's app on the fake engine (tests/fakes.py), served in a thread with a
    conversation store of its own (or the file at `history_path`). `answer(prompt)` is what the
    model says (by default "Hello from the fake model!"); each step takes `step_delay_s`, for
    answers long enough to be interrupted; a token is a byte. `keys`: {key: user}."""
    from fakes import FakeEngine, fake_runtime
    from jisu.server.access import AccessPolicy
    from jisu.server.app import create_app

    with ExitStack() as stack:
        def start(answer=None, step_delay_s: float = 0.0, ctx_size: int = 2048,
                  history_path: Path | None = None, keys: dict[str, str] | None = None) -> Server:
            engine = FakeEngine(step_delay_s=step_delay_s, ctx_size=ctx_size)
            if answer is not None:
                engine.answer = answer
            runtime = stack.enter_context(fake_runtime(engine, parallel=2))
            app = create_app(runtime, access=AccessPolicy.build(keys=keys),
                             history_path=history_path or tmp_path / f"history-{id(engine)}.db")
            url, _ = stack.enter_context(serving_in_thread(app))
            return Server(url)

        yield start


@pytest.fixture(scope="session")
def server(model_path, tmp_path_factory):
    """The main server, context 2048: short enough to be quick, long enough for chats."""
    home = {"JISU_HOME": str(tmp_path_factory.mktemp("jisu-home"))}
    with running_server(model_path, "--ctx-size", "2048", name="e2e-main", env=home) as url:
        yield Server(url)


@pytest.fixture(scope="session")
def small_server(model_path, tmp_path_factory):
    """A server with a tiny context, for the context-overflow test."""
    home = {"JISU_HOME": str(tmp_path_factory.mktemp("jisu-home-small"))}
    with running_server(model_path, "--ctx-size", "512", name="e2e-small", env=home) as url:
        yield Server(url)


@pytest.fixture(scope="session")
def playwright():
    """One Playwright for the session (its sync API cannot run twice in one thread)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as started:
        yield started


@pytest.fixture(scope="session")
def browser(playwright):
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def webgpu_browser(playwright):
    """Chromium with WebGPU on SwiftShader: an adapter exists, but it is a software one."""
    args = [arg for arg in CHROMIUM_ARGS if arg != "--disable-gpu"]
    launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                          args=args + ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"])
    yield launched
    launched.close()


@pytest.fixture
def new_page(browser, request):
    """new_page(locale=..., viewport=..., color_scheme=...) -> a page in a fresh context.
    Page errors fail the test: a broken script is a broken UI."""
    contexts = []
    errors: list[str] = []

    def make(locale: str = "zh-CN", viewport: dict | None = None, color_scheme: str = "light"):
        context = browser.new_context(locale=locale, viewport=viewport or {"width": 1280, "height": 800},
                                      color_scheme=color_scheme)
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
