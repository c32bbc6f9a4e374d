"""`jisu ask` time to answer: through a running `jisu serve` vs loading the model in-process.

Both are the command a user types, run as a subprocess on the same model file: `jisu ask --url
URL "..."` against a `jisu serve` this script starts (once, not timed), and `jisu ask --model
PATH "..."`, which loads the model itself. The two alternate round by round so machine noise
hits both alike, and each round asks about another city: the server's prefix cache must not
answer a question it has already read. One untimed warm-up each first (the server's first
request, the model file into the page cache). Figures are medians: the first byte of the
answer on stdout, and the command's exit (the whole answer written).

    .venv/bin/python benchmarks/bench_cli.py [--model PATH] [--rounds 3] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from servers import free_port, server
from standin import standin_path

CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "西安", "南京", "武汉", "重庆"]
# Neither JISU_URL nor a server someone runs on 8080 may decide what answers.
ENV = {name: value for name, value in os.environ.items() if name not in ("JISU_URL", "JISU_API_KEY")}
JISU = [sys.executable, "-m", "jisu.cli"]


def time_ask(args: list[str]) -> tuple[float, float]:
    """(seconds to the answer's first byte on stdout, seconds to the command's exit)."""
    started = time.perf_counter()
    process = subprocess.Popen(JISU + ["ask", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, env=ENV)
    first = process.stdout.read(1)
    first_byte = time.perf_counter() - started
    rest, err = process.communicate(timeout=600)
    total = time.perf_counter() - started
    if process.returncode != 0 or not (first + rest).strip():
        raise SystemExit(f"jisu ask {' '.join(args)} failed ({process.returncode}): {err.decode()[-500:]}")
    return first_byte, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="alias or GGUF path (default: the stand-in in jisu's default format)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    options = parser.parse_args()
    model = standin_path(options.model)
    sampling = ["--temperature", "0", "--max-tokens", str(options.max_tokens)]
    question = "用一句话介绍{}。"
    results: dict[str, list[tuple[float, float]]] = {"server": [], "in-process": []}
    port = free_port()
    with server(JISU + ["serve", "--model", model, "--port", str(port)], port, "jisu-cli") as (url, _):
        ways = {"server": ["--url", url], "in-process": ["--model", model]}
        for args in ways.values():
            time_ask([question.format("中国"), *args, *sampling])  # warm-up, not counted
        for round_ in range(options.rounds):
            city = CITIES[round_ % len(CITIES)]
            for way, args in ways.items():
                results[way].append(time_ask([question.format(city), *args, *sampling]))
                first, total = results[way][-1]
                print(f"round {round_ + 1} {way:>10}: first byte {first:.2f} s, whole answer {total:.2f} s",
                      file=sys.stderr)

    print(f"\n`jisu ask` (greedy, up to {options.max_tokens} tokens), {Path(model).name}, "
          f"medians of {options.rounds} rounds:\n")
    print("| way | first byte of the answer | whole answer (command exits) |")
    print("|---|---|---|")
    medians = {}
    for way, runs in results.items():
        medians[way] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        print(f"| {way} | {medians[way][0]:.2f} s | {medians[way][1]:.2f} s |")
    print(f"| in-process / server | {medians['in-process'][0] / medians['server'][0]:.1f}× | "
          f"{medians['in-process'][1] / medians['server'][1]:.1f}× |")


if __name__ == "__main__":
    main()
