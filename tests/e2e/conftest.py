"""Fixtures for the browser tests: a real `jisu serve` with the stand-in model, and Debian's
chromium driven by Playwright (a browser download via `playwright install` is not available
here, so the system chromium is launched by path).

Servers are started once per session; every test gets a fresh browser context, which means
an empty IndexedDB and localStorage.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from live_server import running_server
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
