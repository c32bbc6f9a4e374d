"""Many clients at once on the real server, some hanging up mid-answer: nothing hangs or leaks."""

from __future__ import annotations

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from live_server import running_server


@pytest.fixture(scope="module")
def server(model_path):
    with running_server(model_path, "--ctx-size", "2048", "--parallel", "4", "--max-queue", "64",
                        name="stress") as url:
        yield url


async def one_client(client: httpx.AsyncClient, url: str, number: int, rng: random.Random) -> str:
    body = {"max_tokens": rng.randint(4, 24), "stream": True, "temperature": 0.8,
            "messages": [{"role": "user", "content": f"Tell me fact number {number} about the sea."}]}
    hang_up_after = rng.choice([None, None, 0, 1, 3])  # chunks to read before disconnecting
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


def test_forty_requests_at_concurrency_twelve_with_disconnects(server):
    async def scenario():
        rng = random.Random(2024)
        gate = asyncio.Semaphore(12)
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=16)) as client:
            async def guarded(n):
                async with gate:
                    return await one_client(client, server, n, rng)

            return await asyncio.wait_for(asyncio.gather(*(guarded(n) for n in range(40))), timeout=600)

    # A thread of its own: the session-wide Playwright browser of the e2e tests keeps an
    # event loop running on the main thread, where asyncio.run would refuse to start.
    with ThreadPoolExecutor(max_workers=1) as pool:
        outcomes = pool.submit(asyncio.run, scenario()).result()
    assert "ended without [DONE]" not in outcomes
    assert outcomes.count("finished") >= 10 and outcomes.count("disconnected") >= 5, outcomes
    deadline = time.monotonic() + 15
    while True:
        metrics = httpx.get(f"{server}/metrics").text
        idle = all(f"{name} 0.0" in metrics for name in
                   ("jisu_requests_running", "jisu_requests_queued", "jisu_slots_in_use"))
        if idle:
            break
        assert time.monotonic() < deadline, "requests or slots leaked:\n" + metrics[-800:]
        time.sleep(0.1)
    # and the server still answers
    response = httpx.post(f"{server}/v1/chat/completions", timeout=120, json={
        "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
