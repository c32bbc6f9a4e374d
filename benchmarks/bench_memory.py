"""Memory of `jisu serve` with long contexts: one conversation filled close to the limit.

For each context size and KV cache type: the server's resident memory after loading, its
peak while reading a prompt that fills the context, the time that prompt took, and the
decode speed at that depth.

    .venv/bin/python benchmarks/bench_memory.py [--sizes 8192,16384,32768] [--kv f16,q8_0]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import jisu_server  # noqa: E402
from loadgen import stream_chat  # noqa: E402
from standin import standin_path  # noqa: E402


def rss_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def filler(tokens: int) -> str:
    # ~17 tokens per sentence with the Qwen tokenizer; 18 leaves room for the answer
    return " ".join(f"Note {i}: the harbour lights were checked and found in good order."
                    for i in range(tokens // 18))


def measure(model: str, threads: int, ctx: int, kv: str, flash: str) -> dict:
    extra = ["--kv-cache-type", kv, "--flash-attn", flash]
    with jisu_server(model, threads, parallel=1, ctx=ctx, extra=extra) as (url, pid):
        loaded = rss_mb(pid, "VmRSS")
        body = {"temperature": 0, "max_tokens": 64, "ignore_eos": True,
                "messages": [{"role": "user", "content": filler(ctx - 400) + "\n\nSummarise."}]}
        started = time.perf_counter()
        result = asyncio.run(_one(url, body))
        if result.error:
            raise RuntimeError(result.error)
        return {
            "loaded_mb": loaded,
            "peak_mb": rss_mb(pid, "VmHWM"),
            "prompt_s": result.ttft_s,
            "decode_tps": 1 / result.tpot_s if result.tpot_s else float("nan"),
            "total_s": time.perf_counter() - started,
        }


async def _one(url, body):
    async with httpx.AsyncClient(timeout=3600) as client:
        return await stream_chat(client, url, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="8192,16384,32768")
    parser.add_argument("--kv", default="f16,q8_0")
    parser.add_argument("--flash-attn", default="auto", help="comma list of auto/on/off to compare")
    args = parser.parse_args()
    args.model = standin_path(args.model)
    print(f"model {Path(args.model).name}, {args.threads} threads, one conversation per server\n")
    print("| context | KV cache | flash attention | RSS loaded | peak RSS | prompt read | decode at depth |")
    print("|---|---|---|---|---|---|---|")
    for ctx in (int(s) for s in args.sizes.split(",")):
        for kv in args.kv.split(","):
            for flash in args.flash_attn.split(","):
                m = measure(args.model, args.threads, ctx, kv, flash)
                print(f"| {ctx} | {kv} | {flash} | {m['loaded_mb']:.0f} MB | {m['peak_mb']:.0f} MB | "
                      f"{m['prompt_s']:.0f} s | {m['decode_tps']:.1f} tok/s |", flush=True)


if __name__ == "__main__":
    main()
