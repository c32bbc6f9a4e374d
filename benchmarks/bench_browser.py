"""Browser mode: the model in headless Chromium (wllama, WebAssembly) beside server mode.

For each format shipped to the browser (`jisu serve --browser-quant`): the cold load (the
parts downloaded from the server on loopback into the browser's storage, then loaded), the
load from the browser's cache (a reload), the time to the first token and the decode rate of
one short Chinese question, with one thread and with all of them; and the same question over
the server's OpenAI API on the same file (server mode), in the same run. Everything goes
through the real page (`jisu serve`'s chat page in device mode), timed by the page itself.

    .venv/bin/python benchmarks/bench_browser.py [--formats q8_0,q4_0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from servers import jisu_server  # noqa: E402
from loadgen import stream_chat  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FORMATS = ["q8_0", "q4_0", "q4_k_m", "iq4_nl"]
QUESTION = "用一句话介绍北京。"
SYSTEM = "你是一个乐于助人的中文助手。回答准确、简洁、有条理；不确定时请直说不知道，不要编造。"  # the page's default role
MAX_TOKENS = 64
LOAD_TIMEOUT_MS = 600_000


def wait_manifest(url: str) -> dict:
    """The server prepares the parts on the first request: wait for them, untimed."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/web-model/manifest.json", timeout=10)
        if response.status_code == 200:
            return response.json()
        response.raise_for_status()
        time.sleep(1)
    raise RuntimeError("the browser's model was never ready")


def wait_device(page) -> None:
    page.wait_for_function("() => ['ready', 'failed'].includes(document.body.dataset.device)",
                           timeout=LOAD_TIMEOUT_MS)
    if page.evaluate("document.body.dataset.device") != "ready":
        raise RuntimeError(page.get_by_test_id("device-text").inner_text())


def ask_and_time(page) -> dict:
    """Ask through the page; the stats are the ones stored with the answer."""
    page.get_by_test_id("new-chat").click()
    page.get_by_test_id("chat-input").fill(QUESTION)
    page.get_by_test_id("send-button").click()
    page.wait_for_function("() => !document.querySelector('.msg.pending') && "
                           "document.querySelectorAll('[data-testid=answer-stats]').length > 0", timeout=LOAD_TIMEOUT_MS)
    timings = page.evaluate("""async () => {
        const store = await import('/static/store.js');
        const newest = (await store.listConversations()).sort((a, b) => b.updatedAt - a.updatedAt)[0];
        return newest.messages.at(-1).timings; }""")
    return {"ttft_s": timings["time_to_first_token_ms"] / 1000, "decode": timings["tokens_per_second"]}


def browser_round(playwright, url: str, threads: int | None) -> dict:
    """One fresh browser profile: cold load, cached load, then two questions."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        context = browser.new_context(locale="zh-CN")
        if threads:  # the page uses navigator.hardwareConcurrency threads
            context.add_init_script(f"Object.defineProperty(navigator, 'hardwareConcurrency', {{get: () => {threads}}})")
        context.add_init_script("localStorage.setItem('jisu.settings', JSON.stringify("
                                f"{{temperature: 0, maxTokens: {MAX_TOKENS}, mode: 'device'}}))")
        page = context.new_page()
        started = time.perf_counter()
        page.goto(f"{url}/")
        wait_device(page)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        page.reload()
        wait_device(page)
        cached = time.perf_counter() - started
        used_threads = page.evaluate("document.body.dataset.deviceBackend")
        first = ask_and_time(page)  # reads the whole prompt, system prompt included
        second = ask_and_time(page)  # a new chat: the system prompt is still in the KV cache
        return {"cold_s": cold, "cached_s": cached, "backend": used_threads, "ttft_s": first["ttft_s"],
                "ttft_next_s": second["ttft_s"], "decode": statistics.median([first["decode"], second["decode"]])}
    finally:
        browser.close()


async def server_mode(url: str, rounds: int) -> dict:
    """The same question over the API; the first request reads the system prompt, the rest
    find it cached (as the page's second question does)."""
    body = {"model": "any", "temperature": 0, "max_tokens": MAX_TOKENS,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]}
    ttfts, rates = [], []
    async with httpx.AsyncClient(timeout=300) as client:
        for _ in range(rounds + 1):
            result = await stream_chat(client, url, body)
            if result.error:
                raise RuntimeError(result.error)
            ttfts.append(result.ttft_s)
            rates.append(1 / result.tpot_s if result.tpot_s else 0.0)
    return {"ttft_s": ttfts[0], "ttft_next_s": statistics.median(ttfts[1:]), "decode": statistics.median(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="the server's threads and the page's 'all'")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from jisu.models.registry import STANDIN_ALIAS

    print("| format | backend/threads | cold load | load from cache | first token (first / next question) | decode "
          "| server mode, same file: first token (first / next), decode |\n|---|---|---|---|---|---|---|")
    for quant in args.formats.split(","):
        with jisu_server(STANDIN_ALIAS, args.threads, 1, 4096, ["--quant", quant, "--browser-quant", quant]) as (url, _):
            manifest = wait_manifest(url)
            server = asyncio.run(server_mode(url, args.rounds))
            with sync_playwright() as playwright:
                for threads in (1, None):
                    rounds = [browser_round(playwright, url, threads) for _ in range(args.rounds)]
                    median = {key: statistics.median(r[key] for r in rounds)
                              for key in ("cold_s", "cached_s", "ttft_s", "ttft_next_s", "decode")}
                    print(f"| {quant} ({manifest['size'] / 1e6:.0f} MB) | {rounds[0]['backend']} | "
                          f"{median['cold_s']:.1f} s | {median['cached_s']:.1f} s | "
                          f"{median['ttft_s']:.2f} / {median['ttft_next_s']:.2f} s | {median['decode']:.1f} tok/s | "
                          f"{server['ttft_s']:.2f} / {server['ttft_next_s']:.2f} s, {server['decode']:.1f} tok/s |",
                          flush=True)


if __name__ == "__main__":
    main()
