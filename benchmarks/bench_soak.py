"""Soak: a shared `jisu serve` under a steady mixed load for a long time. Figures, not a test.

    .venv/bin/python benchmarks/bench_soak.py --minutes 30 --concurrency 8

Starts `jisu serve` with an API key (the LAN setup) on the stand-in model, then keeps
`--concurrency` clients busy with a mix: short chats (streamed), long prompts (~1,500 tokens),
non-streaming questions, and clients that hang up at a random point. Samples the server's RSS
every minute and prints: requests by kind and outcome, any 5xx, time to first token (p50/p99)
of the short chats, and RSS per minute with its spread over the second half of the run (the
first minutes fill the --cache-ram conversation store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import percentile  # noqa: E402
from standin import standin_path  # noqa: E402

KEY = "soak-key-0123456789"
DOCUMENT = (Path(__file__).parent / "data" / "prose_zh_en.txt").read_text(encoding="utf-8")
KINDS = ["short"] * 12 + ["long"] * 2 + ["plain"] * 3 + ["hang_up"] * 3


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def body_for(kind: str, rng: random.Random) -> dict:
    if kind == "long":
        start = rng.randrange(0, len(DOCUMENT) // 2)
        text = DOCUMENT[start:start + 2400]  # ~1,500 tokens of mixed Chinese and English
        return {"max_tokens": 48, "messages": [{"role": "user", "content": f"{text}\n\n用一句话总结上文。"}]}
    question = rng.choice(["用一句话介绍北京。", "What is a lighthouse?", "写一首关于秋天的短诗。",
                           "Explain recursion to a child.", "列出三种水果。", "How do trains stay on rails?"])
    return {"max_tokens": rng.randint(16, 96), "temperature": 0.7,
            "messages": [{"role": "user", "content": f"{question} ({rng.randrange(10**6)})"}]}


async def one_request(client: httpx.AsyncClient, url: str, kind: str, rng: random.Random) -> tuple[str, float | None]:
    """(outcome, time to first token) for one request of `kind`."""
    body = body_for(kind, rng)
    started = time.perf_counter()
    if kind == "plain":
        response = await client.post(f"{url}/v1/chat/completions", json=body)
        return (f"HTTP {response.status_code}" if response.status_code != 200 else "ok"), None
    hang_up_after = rng.randint(0, 8) if kind == "hang_up" else None
    chunks, first = 0, None
    async with client.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as response:
        if response.status_code != 200:
            return f"HTTP {response.status_code}", None
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                return "ok", first
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return "stream error: " + chunk["error"]["message"][:80], first
            if first is None and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                first = time.perf_counter() - started
            chunks += 1
            if hang_up_after is not None and chunks > hang_up_after:
                return "hung up", first
    return "ended without [DONE]", first


async def soak(url: str, pid: int, minutes: float, concurrency: int, seed: int) -> dict:
    deadline = time.monotonic() + minutes * 60
    outcomes: Counter = Counter()
    ttfts: list[float] = []
    rss: list[float] = [rss_mb(pid)]
    headers = {"Authorization": f"Bearer {KEY}"}

    async def worker(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        async with httpx.AsyncClient(timeout=600, headers=headers) as client:
            while time.monotonic() < deadline:
                kind = rng.choice(KINDS)
                try:
                    outcome, ttft = await one_request(client, url, kind, rng)
                except httpx.HTTPError as error:
                    outcome, ttft = f"client error {type(error).__name__}", None
                outcomes[(kind, outcome)] += 1
                if kind == "short" and ttft is not None and outcome == "ok":
                    ttfts.append(ttft)

    async def sampler() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(min(60, max(0.1, deadline - time.monotonic())))
            rss.append(rss_mb(pid))
            served = sum(outcomes.values())
            print(f"  minute {len(rss) - 1}: RSS {rss[-1]:.0f} MB, {served} requests so far", flush=True)

    await asyncio.gather(sampler(), *(worker(n) for n in range(concurrency)))
    return {"outcomes": outcomes, "ttfts": ttfts, "rss": rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache-ram", type=int, default=512, metavar="MB", help="jisu serve --cache-ram")
    args = parser.parse_args()

    model = standin_path()
    log = tempfile.NamedTemporaryFile("w", prefix="jisu-soak-", suffix=".log", delete=False)
    server = subprocess.Popen([sys.executable, "-m", "jisu.cli", "serve", "--model", model, "--port", str(args.port),
                               "--api-key", KEY, "--cache-ram", str(args.cache_ram)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        print(f"soak: {args.minutes:g} min, concurrency {args.concurrency}, server log {log.name}", flush=True)
        result = asyncio.run(soak(url, server.pid, args.minutes, args.concurrency, args.seed))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        code = server.wait(timeout=60)

    outcomes, ttfts, rss = result["outcomes"], result["ttfts"], result["rss"]
    served = sum(n for (_, outcome), n in outcomes.items() if outcome in ("ok", "hung up"))
    server_errors = sum(n for (_, outcome), n in outcomes.items() if outcome.startswith("HTTP 5"))
    print(f"\nrequests: {sum(outcomes.values())} ({served} served, {server_errors} answered 5xx)")
    for (kind, outcome), count in sorted(outcomes.items()):
        print(f"  {kind:8} {outcome:24} {count}")
    if ttfts:
        print(f"short chats: time to first token p50 {percentile(ttfts, 50):.2f} s, p99 {percentile(ttfts, 99):.2f} s "
              f"({len(ttfts)} answers)")
    # RSS grows while the --cache-ram store (512 MB) fills with conversations moved out of
    # the slots, then must stay flat: judge the second half of the run.
    steady = rss[len(rss) // 2:]
    median = statistics.median(steady)
    spread = max(abs(value - median) for value in steady) / median * 100
    print("RSS per minute (MB): " + " ".join(f"{value:.0f}" for value in rss))
    print(f"RSS over the second half: median {median:.0f} MB, furthest sample {spread:.1f}% from it; "
          f"first {rss[0]:.0f} MB, last {rss[-1]:.0f} MB")
    print(f"server exit code after SIGTERM: {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
