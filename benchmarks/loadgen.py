"""A small load generator for OpenAI-compatible chat servers (asyncio + httpx).

Metrics follow vLLM's benchmark_serving:
  TTFT  time to first token: request sent -> first content chunk
  ITL   inter-token latency: the gaps between consecutive content chunks of a stream
  TPOT  time per output token after the first: (latency - TTFT) / (output tokens - 1)
  output throughput: all output tokens / wall time of the run

    .venv/bin/python benchmarks/loadgen.py --url http://127.0.0.1:8080 --concurrency 8 --requests 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class StreamResult:
    ttft_s: float = 0.0
    latency_s: float = 0.0
    output_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the server did not have to process again
    chunk_times: list[float] = field(default_factory=list)  # perf_counter of each content chunk
    text: str = ""
    error: str | None = None

    @property
    def itl_s(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:])]

    @property
    def tpot_s(self) -> float | None:
        if self.output_tokens < 2:
            return None
        return (self.latency_s - self.ttft_s) / (self.output_tokens - 1)


async def stream_chat(client: httpx.AsyncClient, url: str, body: dict) -> StreamResult:
    """Send one streaming chat request and time every content chunk. A kept-alive connection
    the server closed just as the request went out is retried once, as browsers do (llama-server
    closes idle ones; the request never reached it)."""
    result = await _stream_chat_once(client, url, body)
    if result.error and result.error.startswith("RemoteProtocolError") and not result.chunk_times:
        result = await _stream_chat_once(client, url, body)
    return result


async def _stream_chat_once(client: httpx.AsyncClient, url: str, body: dict) -> StreamResult:
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    result = StreamResult()
    started = time.perf_counter()
    pieces = []
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    result.error = chunk["error"].get("message", "error")
                    break
                if chunk.get("usage"):
                    usage = chunk["usage"]
                    result.output_tokens = usage["completion_tokens"]
                    result.prompt_tokens = usage.get("prompt_tokens", 0)
                    result.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
                for choice in chunk.get("choices", []):
                    content = choice.get("delta", {}).get("content")
                    if content:
                        now = time.perf_counter()
                        if not result.chunk_times:
                            result.ttft_s = now - started
                        result.chunk_times.append(now)
                        pieces.append(content)
    except httpx.HTTPError as error:
        result.error = f"{type(error).__name__}: {error}"
    result.latency_s = time.perf_counter() - started
    result.text = "".join(pieces)
    if not result.output_tokens:  # the server sent no usage: one chunk per token
        result.output_tokens = len(result.chunk_times)
    return result


@dataclass
class RunSummary:
    results: list[StreamResult]
    wall_s: float

    @property
    def ok(self) -> list[StreamResult]:
        return [r for r in self.results if r.error is None]

    @property
    def output_throughput(self) -> float:
        return sum(r.output_tokens for r in self.ok) / self.wall_s if self.wall_s else 0.0

    def ttft(self, q: float) -> float:
        return percentile([r.ttft_s for r in self.ok], q)

    def itl(self, q: float) -> float:
        return percentile([gap for r in self.ok for gap in r.itl_s], q)

    def describe(self) -> str:
        errors = len(self.results) - len(self.ok)
        return (f"{len(self.ok)} ok, {errors} failed in {self.wall_s:.1f} s; "
                f"output {self.output_throughput:.1f} tok/s; TTFT p50 {self.ttft(50):.2f} s p99 {self.ttft(99):.2f} s; "
                f"ITL p50 {self.itl(50) * 1000:.0f} ms p99 {self.itl(99) * 1000:.0f} ms")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run_load(url: str, bodies: list[dict], concurrency: int, timeout_s: float = 900) -> RunSummary:
    """Send `bodies` with at most `concurrency` in flight; returns per-request results."""
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(body):
            async with gate:
                return await stream_chat(client, url, body)

        started = time.perf_counter()
        results = await asyncio.gather(*(one(body) for body in bodies))
        return RunSummary(list(results), time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    topics = ["rivers", "mountains", "bread", "trains", "tea", "maps", "rain", "lighthouses"]
    bodies = [{"model": args.model, "max_tokens": args.max_tokens, "temperature": 0.7,
               "messages": [{"role": "user", "content": f"Write a short essay about {topics[i % len(topics)]}."}]}
              for i in range(args.requests)]
    summary = asyncio.run(run_load(args.url, bodies, args.concurrency))
    print(summary.describe())
    medians = [r.tpot_s for r in summary.ok if r.tpot_s]
    if medians:
        print(f"TPOT median {statistics.median(medians) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
