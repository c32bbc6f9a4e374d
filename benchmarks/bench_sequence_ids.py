"""Why jisu keeps running answers in consecutive sequence ids (jisu/scheduler/placement.py).

With one KV stream per sequence, llama.cpp reads all the weights once per run of consecutive
sequence ids in a batch. This times one decode step of answers in different sets of
sequences, on the engine alone (no server), and what moving a sequence's KV costs.

    .venv/bin/python benchmarks/bench_sequence_ids.py [--model PATH] [--threads 2] [--steps 15]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from standin import standin_path

from jisu.config import EngineConfig
from jisu.engine.llama import LlamaEngine
from jisu.engine.protocol import BatchSlice

SETS = {"1 answer (0)": [0], "4 in one run (0-3)": [0, 1, 2, 3], "4 in two runs (0, 1, 6, 7)": [0, 1, 6, 7],
        "4 in four runs (0, 2, 4, 6)": [0, 2, 4, 6], "8 in one run (0-7)": list(range(8))}
CONTEXT_TOKENS = 200  # each answer's history
MOVED_TOKENS = 2000


def measure(model: str, threads: int, steps: int) -> None:
    engine = LlamaEngine(EngineConfig(model_path=model, ctx_size=4096, parallel=8, threads=threads))
    engine.warm_up()
    text = engine.tokenizer.tokenize("The quick brown fox jumps over the lazy dog near the river bank. " * 200)
    for seq in range(8):
        engine.decode([BatchSlice(seq, text[:CONTEXT_TOKENS], 0, False)])
    position = dict.fromkeys(range(8), CONTEXT_TOKENS)
    times = {name: [] for name in SETS}
    for _ in range(steps):  # the sets take turns, so noise hits them alike
        for name, seqs in SETS.items():
            batch = [BatchSlice(seq, [text[position[seq]]], position[seq], True) for seq in seqs]
            started = time.perf_counter()
            engine.decode(batch)
            times[name].append(time.perf_counter() - started)
            for seq in seqs:
                position[seq] += 1
    print(f"| running answers in sequences | decode step (median of {steps}) |\n|---|---|")
    for name, values in times.items():
        print(f"| {name} | {1000 * statistics.median(values):.1f} ms |")

    engine.forget(1)
    for start in range(0, MOVED_TOKENS, 500):
        engine.decode([BatchSlice(1, text[start:start + 500], start, False)])
    saves, restores = [], []
    for _ in range(5):
        started = time.perf_counter()
        state = engine.save_sequence(1)
        saves.append(time.perf_counter() - started)
        started = time.perf_counter()
        engine.restore_sequence(5, state)
        restores.append(time.perf_counter() - started)
    print(f"\nmoving a {MOVED_TOKENS:,}-token sequence ({len(state) / 1e6:.1f} MB of KV): save "
          f"{1000 * statistics.median(saves):.1f} ms, restore {1000 * statistics.median(restores):.1f} ms")
    engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="GGUF path (default: the cached stand-in)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    # On a thread of its own, as jisu's engine thread: llama.cpp's OpenMP team belongs to it.
    worker = threading.Thread(target=measure, args=(standin_path(args.model), args.threads, args.steps))
    worker.start()
    worker.join()


if __name__ == "__main__":
    main()
