"""Browser mode for real: the page downloads the model from `jisu serve` (or from a static
export), runs it in Debian's chromium through the vendored wllama, and answers with the
server gone. Loading ~0.4 GB into WebAssembly takes a while on two cores: the waits are long
and judged by the page's own state (body[data-device]), never by a stopwatch."""

from __future__ import annotations

import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from live_server import launched_server
from static_site import static_site
from uihelpers import ask, configure, wait_answer_done

DEVICE_LOAD_MS = 300_000  # download + load on a busy 2-core machine
ANSWER_MS = 180_000
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def browser_home(tmp_path_factory) -> Path:
    """One JISU_HOME for the module's servers and exports: the parts are split once."""
    return tmp_path_factory.mktemp("jisu-home-browser")


def switch_to_device(page) -> None:
    page.get_by_test_id("mode-toggle").click()
    wait_device_ready(page)


def wait_device_ready(page) -> None:
    page.wait_for_function("() => ['ready', 'failed'].includes(document.body.dataset.device)",
                           timeout=DEVICE_LOAD_MS)
    state = page.evaluate("document.body.dataset.device")
    assert state == "ready", page.get_by_test_id("device-text").inner_text()


@contextmanager
def server_and_page(new_page, model_path: Path, home: Path, name: str, locale: str = "zh-CN",
                    init_script: str | None = None):
    """A `jisu serve` with browser mode and a page on it in server mode, connected; yields
    (server, page, the URLs the page requested)."""
    with launched_server(model_path, "--ctx-size", "2048", env={"JISU_HOME": str(home)}, name=name) as server:
        page = new_page(locale=locale)
        if init_script:
            page.context.add_init_script(init_script)
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{server.url}/")
        page.wait_for_selector("body[data-ready=true][data-connected=true]")
        yield server, page, requests


def part_requests(requests: list[str]) -> list[str]:
    return [url for url in requests if "/web-model/" in url and url.endswith(".gguf")]


def last_answer(page) -> str:
    return page.get_by_test_id("answer-body").last.inner_text()


def test_device_mode_answers_streams_reloads_from_cache_and_works_offline(new_page, model_path, browser_home):
    with server_and_page(new_page, model_path, browser_home, "e2e-browser") as (server, page, requests):
        assert page.evaluate("crossOriginIsolated"), "threads need the isolation headers"
        switch_to_device(page)
        assert page.get_by_test_id("model-place").is_visible(), "the header says the model runs here"
        downloaded = part_requests(requests)
        assert downloaded, "the model came from the server"
        configure(page, temperature=0, max_tokens=40)
        ask(page, "用一句话介绍北京。")
        page.wait_for_function("() => document.querySelector('.msg.pending [data-testid=answer-body]')"
                               "?.innerText.length > 0", timeout=ANSWER_MS)  # text before the end: streamed
        wait_answer_done(page, 1, timeout=ANSWER_MS)
        assert CJK.search(last_answer(page)), last_answer(page)
        stats = page.get_by_test_id("answer-stats").last.inner_text()
        assert "tokens" in stats, "the same stats line as server answers"

        requests.clear()
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert page.get_by_test_id("mode-toggle").get_attribute("data-mode") == "device", "the choice is kept"
        wait_device_ready(page)
        assert part_requests(requests) == [], "the second visit loads the model from the browser's cache"

        assert server.stop() == 0
        ask(page, "再用一句话介绍上海。")  # in the new chat the reload opened
        wait_answer_done(page, 1, timeout=ANSWER_MS)
        assert CJK.search(last_answer(page)), "answered with the server gone"
        assert page.get_by_test_id("connection-banner").is_hidden(), "the server's absence is no error here"


def test_the_same_greedy_answer_in_both_modes_and_stop_works_on_the_device(new_page, model_path, browser_home):
    question = "What is the capital of France? Answer in one sentence."
    with server_and_page(new_page, model_path, browser_home, "e2e-browser-greedy", "en-US") as (_, page, _requests):
        configure(page, temperature=0, max_tokens=32)
        ask(page, question)
        wait_answer_done(page, 1, timeout=ANSWER_MS)
        on_server = last_answer(page)
        page.get_by_test_id("new-chat").click()
        switch_to_device(page)
        ask(page, question)
        wait_answer_done(page, 1, timeout=ANSWER_MS)
        on_device = last_answer(page)
        assert on_server and on_device == on_server, \
            "the template and stop tokens come from the same GGUF: the same file answers the same"

        configure(page, max_tokens=400)
        ask(page, "Write a long story about the sea, with many chapters.")
        page.wait_for_function("() => document.querySelector('.msg.pending [data-testid=answer-body]')"
                               "?.innerText.length > 20", timeout=ANSWER_MS)
        page.get_by_test_id("stop-button").click()
        page.get_by_test_id("finish-cancelled").wait_for(timeout=ANSWER_MS)
        assert len(last_answer(page)) > 20, "the text written before stop is kept"
        ask(page, "Say hello.")  # the engine is free again
        wait_answer_done(page, 3, timeout=ANSWER_MS)


def export_site(model_path: Path, home: Path, folder: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "jisu.cli", "export-web", str(folder), "--model", str(model_path)],
                            env={"JISU_HOME": str(home), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr


def test_static_export_runs_without_a_server_and_resumes_a_broken_download(new_page, model_path, browser_home,
                                                                           tmp_path):
    folder = tmp_path / "site"
    export_site(model_path, browser_home, folder)
    with static_site(folder) as (url, site):
        site.cut_next_part_after = 5_000_000
        page = new_page()
        page.goto(f"{url}/")
        page.wait_for_selector("body[data-ready=true]")
        assert page.get_by_test_id("mode-toggle").is_hidden(), "no server here: device mode only"
        page.wait_for_function("() => ['ready', 'failed'].includes(document.body.dataset.device)",
                               timeout=DEVICE_LOAD_MS)
        assert page.evaluate("document.body.dataset.device") == "failed", "the cut download is reported"
        assert "broke off" in page.get_by_test_id("device-text").inner_text() or \
            "中断" in page.get_by_test_id("device-text").inner_text()
        page.get_by_test_id("device-retry").click()
        wait_device_ready(page)
        resumed = [(path, ranged) for path, ranged in site.requests if ranged]
        assert resumed and int(resumed[0][1].removeprefix("bytes=").rstrip("-")) > 0, \
            f"the retry resumed the broken part instead of starting over: {site.requests}"
        ask(page, "用一句话介绍北京。")
        wait_answer_done(page, 1, timeout=ANSWER_MS)
        assert CJK.search(last_answer(page))
        before = len(site.paths(".gguf"))
        page.reload()
        wait_device_ready(page)
        assert len(site.paths(".gguf")) == before, "a reload reads the browser's cache, not the site"


def test_without_isolation_headers_the_page_runs_one_thread_and_says_why(new_page, model_path, browser_home,
                                                                          tmp_path):
    folder = tmp_path / "site"
    export_site(model_path, browser_home, folder)
    with static_site(folder, isolated=False) as (url, _):
        page = new_page(locale="en-US")
        page.goto(f"{url}/")
        page.wait_for_selector("body[data-ready=true]")
        wait_device_ready(page)
        assert page.evaluate("document.body.dataset.deviceBackend") == "cpu/1"
        notice = page.get_by_test_id("device-text").inner_text()
        assert "COOP/COEP" in notice and "1 thread" in notice, notice
        ask(page, "Say hello.")
        wait_answer_done(page, 1, timeout=ANSWER_MS)


def test_webgpu_is_used_only_when_it_works(webgpu_browser, model_path, browser_home):
    with launched_server(model_path, "--ctx-size", "2048", env={"JISU_HOME": str(browser_home)},
                         name="e2e-browser-webgpu") as server:
        context = webgpu_browser.new_context(locale="en-US")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.url}/")
        page.wait_for_selector("body[data-ready=true][data-connected=true]")
        assert page.evaluate("async () => Boolean(await navigator.gpu?.requestAdapter())"), "WebGPU is present"
        switch_to_device(page)
        assert page.evaluate("document.body.dataset.deviceBackend").startswith("cpu/"), \
            "a software adapter is slower than the CPU path: not used"
        # Asked to use WebGPU anyway, the page loads on it or falls back to the CPU, and answers.
        page.evaluate("localStorage.setItem('jisu.deviceBackend', 'webgpu')")
        page.reload()
        wait_device_ready(page)
        ask(page, "Say hello.")
        wait_answer_done(page, 1, timeout=ANSWER_MS)
        assert last_answer(page)
        context.close()
        assert not errors, errors


@pytest.mark.parametrize("shortage, expected", [
    ("Object.defineProperty(navigator, 'deviceMemory', {get: () => 0.25})", "too little memory"),
    ("navigator.storage.estimate = async () => ({quota: 50 * 1024 * 1024, usage: 0})", "Not enough browser storage"),
])
def test_a_device_without_room_for_the_model_is_told_why(new_page, model_path, browser_home, shortage, expected):
    with server_and_page(new_page, model_path, browser_home, "e2e-browser-room", "en-US",
                         init_script=shortage) as (_, page, requests):
        page.get_by_test_id("mode-toggle").click()
        page.wait_for_selector("body[data-device=failed]", timeout=DEVICE_LOAD_MS)
        assert expected in page.get_by_test_id("device-text").inner_text()
        assert part_requests(requests) == [], "nothing is downloaded that cannot be used"
        page.get_by_test_id("mode-toggle").click()  # back to the server, which still answers
        page.wait_for_selector("body[data-connected=true]")
        ask(page, "Say hello.")
        wait_answer_done(page, 1, timeout=ANSWER_MS)


def test_going_back_to_the_server_mid_download_stops_the_download(new_page, model_path, browser_home):
    with server_and_page(new_page, model_path, browser_home, "e2e-browser-back", "en-US") as (_, page, requests):
        page.get_by_test_id("mode-toggle").click()
        page.wait_for_selector("body[data-device=downloading]", timeout=DEVICE_LOAD_MS)
        page.get_by_test_id("mode-toggle").click()
        page.wait_for_selector("body[data-connected=true]")
        asked_for = len(part_requests(requests))
        ask(page, "Say hello.")
        wait_answer_done(page, 1, timeout=ANSWER_MS)
        assert page.get_by_test_id("device-bar").is_hidden()
        assert page.evaluate("document.body.dataset.device") == "idle", "no model was loaded after all"
        assert len(part_requests(requests)) == asked_for, "no further part was fetched"
