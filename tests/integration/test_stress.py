"""Many clients at once on the real server, half of them hanging up mid-answer: nothing hangs,
nothing leaks (requests, slots, memory), and a stop with streams in flight is clean."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from live_server import launched_server

REQUESTS = 200
CONCURRENCY = 16
RSS_SLACK_MB = 50
GRACE_S = 3.0


async def one_client(client: httpx.AsyncClient, url: str, number: int, rng: random.Random) -> str:
    body = {"max_tokens": rng.randint(4, 24), "stream": True, "temperature": 0.8,
            "messages": [{"role": "user", "content": f"Tell me fact number {number} about the sea."}]}
    # Half hang up: before the first byte, after a few chunks, or in the middle of one.
    hang_up_after = rng.choice([None, 0, 1, 3]) if number % 2 else None
    chunks = 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        if response.status_code == 503:
            return "rejected"
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                return "finished"
            if line.startswith("data: "):
                chunks += 1
                if hang_up_after is not None and chunks > hang_up_after:
                    return "disconnected"
    return "ended without [DONE]"


def run_clients(url: str, count: int, seed: int) -> list[str]:
    async def scenario():
        rng = random.Random(seed)
        gate = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(timeout=180, limits=httpx.Limits(max_connections=CONCURRENCY + 4)) as client:
            async def guarded(n):
                async with gate:
                    return await one_client(client, url, n, rng)

            return await asyncio.wait_for(asyncio.gather(*(guarded(n) for n in range(count))), timeout=900)

    # A thread of its own: the session-wide Playwright browser of the e2e tests keeps an
    # event loop running on the main thread, where asyncio.run would refuse to start.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def wait_idle(url: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        metrics = httpx.get(f"{url}/metrics").text
        if all(f"{name} 0.0" in metrics for name in
               ("jisu_requests_running", "jisu_requests_queued", "jisu_slots_in_use")):
            return
        assert time.monotonic() < deadline, "requests or slots leaked:\n" + metrics[-800:]
        time.sleep(0.1)


def test_two_hundred_streams_half_hanging_up_then_a_stop_in_flight(model_path):
    with launched_server(model_path, "--ctx-size", "2048", "--parallel", "4", "--max-queue", "64",
                         "--cache-ram", "16", "--shutdown-grace", str(GRACE_S), name="stress") as server:
        run_clients(server.url, 32, seed=1)  # warm up: allocator pools, the conversation store
        wait_idle(server.url)
        rss_before = server.rss_mb()

        outcomes = run_clients(server.url, REQUESTS, seed=2024)
        assert "ended without [DONE]" not in outcomes
        assert outcomes.count("finished") >= REQUESTS // 2, outcomes
        assert outcomes.count("disconnected") >= REQUESTS // 4, outcomes
        assert "rejected" not in outcomes, "16 clients fit in 4 slots + a queue of 64"
        wait_idle(server.url)
        rss_after = server.rss_mb()
        assert rss_after - rss_before < RSS_SLACK_MB, f"RSS {rss_before:.0f} -> {rss_after:.0f} MB"
        response = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
            "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200, "the server still answers"

        # Now stop it with answers streaming (four) and waiting (two): each gets its final
        # event, then [DONE].
        endings: list[list[str]] = [[] for _ in range(6)]
        streaming = threading.Barrier(len(endings) + 1)

        def long_stream(lines: list[str]) -> None:
            body = {"max_tokens": 1500, "ignore_eos": True, "stream": True,
                    "messages": [{"role": "user", "content": "Write a long story."}]}
            with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as stream:
                waiting = True
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        lines.append(line)
                        if waiting:  # the role chunk: admitted, streaming or queued
                            waiting = False
                            streaming.wait(timeout=120)

        threads = [threading.Thread(target=long_stream, args=(lines,)) for lines in endings]
        for thread in threads:
            thread.start()
        streaming.wait(timeout=120)
        time.sleep(1.0)  # the first four are producing tokens
        stopped_at = time.monotonic()
        code = server.stop(timeout=GRACE_S + 20)
        took = time.monotonic() - stopped_at
        for thread in threads:
            thread.join(timeout=30)
    assert code == 0, f"exit code {code} after SIGTERM"
    assert took < GRACE_S + 8, f"stopped after {took:.1f} s with a grace of {GRACE_S} s"
    for lines in endings:
        assert lines[-1] == "data: [DONE]" and '"server_shutdown"' in lines[-2], lines[-2:]
