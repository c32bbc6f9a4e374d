"""Where jisu's threads should run: engine threads = cores or cores - 1, OpenMP's wait policy
and thread affinity, measured with the event loop busy streaming to clients.

Each configuration is a fresh `jisu serve` (same file, 8 slots) under two loads through the
OpenAI streaming API: one stream of 128 tokens, and 8 concurrent streams of 128 tokens. The
configurations take turns round by round, so a noisy minute of a shared machine hits all.

    .venv/bin/python benchmarks/bench_placement.py [--rounds 3] [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import essay_request  # noqa: E402
from loadgen import run_load  # noqa: E402
from servers import cpu_seconds_by_side, jisu_server  # noqa: E402
from standin import standin_path  # noqa: E402


def configurations(cores: int) -> list[tuple[str, int, dict]]:
    """(label, engine threads, environment) for this machine."""
    spinning = {"OMP_WAIT_POLICY": "active"}
    passive = {"OMP_WAIT_POLICY": "passive"}
    bound = {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}
    chosen = [
        (f"{cores} threads, OpenMP default", cores, {}),
        (f"{cores} threads, spin (OMP_WAIT_POLICY=active)", cores, spinning),
        (f"{cores} threads, sleep (OMP_WAIT_POLICY=passive)", cores, passive),
        (f"{cores} threads, bound to cores (OMP_PROC_BIND=close)", cores, bound),
    ]
    if cores > 1:
        chosen.append((f"{cores - 1} threads, OpenMP default", cores - 1, {}))
    return chosen


async def one_round(url: str, pid: int, round_: int) -> dict:
    single = (await run_load(url, [essay_request(0, variant=round_)], 1)).ok[0]
    before = cpu_seconds_by_side(pid)
    batch = await run_load(url, [essay_request(i, variant=round_) for i in range(8)], 8)
    _, http = (now - then for now, then in zip(cpu_seconds_by_side(pid), before))
    tokens = sum(r.output_tokens for r in batch.ok)
    return {"single": 1 / single.tpot_s, "ttft": single.ttft_s, "batch": 8 / batch.itl(50),
            "output": batch.output_throughput, "http_ms": 1000 * http / tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = standin_path(args.model)
    cores = len(os.sched_getaffinity(0))
    chosen = configurations(cores)
    results: dict[str, list[dict]] = {label: [] for label, _, _ in chosen}
    for round_ in range(args.rounds):
        for label, threads, env in chosen:
            with jisu_server(model, threads, 8, 4096, env=env) as (url, pid):
                results[label].append(asyncio.run(one_round(url, pid, round_)))
            print(f"  round {round_ + 1} {label}: {results[label][-1]}", file=sys.stderr)

    def median(label, key):
        return statistics.median(r[key] for r in results[label])

    print(f"model {Path(model).name}, {cores} cores, medians of {args.rounds} rounds\n")
    print("| configuration | 1 stream: decode | 1 stream: first token | 8 streams: decode (8 / median gap) "
          "| 8 streams: output | event loop CPU per token |")
    print("|---|---|---|---|---|---|")
    for label, _, _ in chosen:
        print(f"| {label} | {median(label, 'single'):.1f} tok/s | {median(label, 'ttft'):.2f} s | "
              f"{median(label, 'batch'):.1f} tok/s | {median(label, 'output'):.1f} tok/s | "
              f"{median(label, 'http_ms'):.2f} ms |")


if __name__ == "__main__":
    main()
