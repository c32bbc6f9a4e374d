"""Many clients at once on the real server, half of them hanging up mid-answer: nothing hangs,
nothing leaks (requests, slots, memory), and a stop with streams in flight is clean."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from live_server import launched_server
from streams import DONE, chunk_content, sse_payload, wait_until, wait_until_server_idle

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
            payload = sse_payload(line)
            if payload == DONE:
                return "finished"
            if payload is not None:
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


def test_two_hundred_streams_half_hanging_up_then_a_stop_in_flight(model_path):
    with launched_server(model_path, "--ctx-size", "2048", "--parallel", "4", "--max-queue", "64",
                         "--cache-ram", "16", "--shutdown-grace", str(GRACE_S), name="stress") as server:
        run_clients(server.url, 32, seed=1)  # warm up: allocator pools, the conversation store
        wait_until_server_idle(server.url)
        rss_before = server.rss_mb()

        outcomes = run_clients(server.url, REQUESTS, seed=2024)
        assert "ended without [DONE]" not in outcomes
        assert outcomes.count("finished") >= REQUESTS // 2, outcomes
        assert outcomes.count("disconnected") >= REQUESTS // 4, outcomes
        assert "rejected" not in outcomes, "16 clients fit in 4 slots + a queue of 64"
        wait_until_server_idle(server.url)
        rss_after = server.rss_mb()
        assert rss_after - rss_before < RSS_SLACK_MB, f"RSS {rss_before:.0f} -> {rss_after:.0f} MB"
        response = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
            "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200, "the server still answers"

        # Now stop it with answers streaming (four) and waiting (two): each gets its final
        # event, then [DONE].
        endings: list[list[dict | str]] = [[] for _ in range(6)]
        streaming = threading.Barrier(len(endings) + 1)

        def long_stream(payloads: list[dict | str]) -> None:
            body = {"max_tokens": 1500, "ignore_eos": True, "stream": True,
                    "messages": [{"role": "user", "content": "Write a long story."}]}
            with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as stream:
                waiting = True
                for line in stream.iter_lines():
                    payload = sse_payload(line)
                    if payload is not None:
                        payloads.append(payload)
                        if waiting:  # the role chunk: admitted, streaming or queued
                            waiting = False
                            streaming.wait(timeout=120)

        threads = [threading.Thread(target=long_stream, args=(payloads,)) for payloads in endings]
        for thread in threads:
            thread.start()
        streaming.wait(timeout=120)
        wait_until(lambda: sum(any(map(chunk_content, payloads)) for payloads in endings) >= 4,
                   "four answers are producing tokens (the other two wait in the queue)", timeout=120)
        # No stopwatch: a server that did not exit by itself would be killed by stop() (a
        # non-zero exit code), and answers of 1500 tokens end only because of the stop.
        code = server.stop(timeout=GRACE_S + 20)
        for thread in threads:
            thread.join(timeout=30)
    assert code == 0, f"exit code {code} after SIGTERM"
    for payloads in endings:
        assert payloads[-1] == DONE, payloads[-2:]
        assert payloads[-2].get("error", {}).get("code") == "server_shutdown", payloads[-2:]
