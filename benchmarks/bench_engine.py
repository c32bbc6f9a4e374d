"""Single-stream engine figures: jisu vs llama-cpp-python's high-level `Llama`, same file.

Each measurement runs in a fresh subprocess (so peak RSS and load time are its own), the
two engines alternate round by round (so machine noise hits both alike), and the table
shows medians.

    .venv/bin/python benchmarks/bench_engine.py [--model PATH] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from standin import chatml

SHORT_PROMPT = "Count from 1 to 1000 in English words, separated by commas. " * 4  # 81 tokens in ChatML
DECODE_TOKENS = 128
LONG_PROMPT_TOKENS = 512


def peak_rss_mb() -> float:
    """Highest resident memory of this process so far, in MB (10^6 bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def rss_mb() -> float:
    """Resident memory now, in MB: what the engine holds while it serves."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def measure_jisu(model: str, threads: int, ctx: int) -> dict:
    from jisu.config import EngineConfig
    from jisu.engine.quantize import quantize
    from jisu.models.resolve import resolve_model
    from jisu.runtime import Prompt, Runtime
    from jisu.types import Finished, SamplingParams, TextDelta

    started = time.perf_counter()
    resolved = resolve_model(model, quiet=True, quantizer=quantize)
    runtime = Runtime.load(resolved, EngineConfig(resolved.path, ctx_size=ctx, threads=threads, parallel=1),
                      reuse_prefixes=False)  # every run pays its full prompt
    load_s = time.perf_counter() - started
    tokenize = lambda text: runtime.tokenizer.tokenize(text, special=True)  # noqa: E731

    def generate(tokens, max_tokens):
        submitted = time.perf_counter()
        first = None
        count = 0
        for event in runtime.stream(Prompt(tokens, SamplingParams(temperature=0, max_tokens=max_tokens))):
            if isinstance(event, TextDelta) and first is None:
                first = time.perf_counter()
            if isinstance(event, Finished):
                count = event.usage.completion_tokens
        return submitted, first, time.perf_counter(), count

    short = tokenize(chatml(SHORT_PROMPT))
    generate(short, 2)  # warm-up: first touch of the weights
    submitted, first, done, count = generate(short, DECODE_TOKENS)
    long_tokens = _long_prompt_tokens(tokenize)
    long_submitted, long_first, _, _ = generate(long_tokens, 1)
    steady_rss = rss_mb()
    runtime.close()
    return {
        "load_s": load_s,
        "prompt_tokens": len(short),
        "ttft_s": first - submitted,
        "decode_tps": (count - 1) / (done - first),
        "prefill_tps": len(long_tokens) / (long_first - long_submitted),
        "rss_mb": steady_rss,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_reference(model: str, threads: int, ctx: int) -> dict:
    from llama_cpp import Llama

    from jisu.engine.quantize import quantize
    from jisu.models.resolve import resolve_model

    path = str(resolve_model(model, quiet=True, quantizer=quantize).path)
    started = time.perf_counter()
    llm = Llama(path, n_ctx=ctx, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    load_s = time.perf_counter() - started
    tokenize = lambda text: llm.tokenize(text.encode(), add_bos=False, special=True)  # noqa: E731

    def generate(tokens, max_tokens):
        llm.reset()  # no prompt reuse between runs, as for jisu
        submitted = time.perf_counter()
        first = None
        count = 0
        for _ in llm.create_completion(tokens, max_tokens=max_tokens, temperature=0, stream=True):
            count += 1
            if first is None:
                first = time.perf_counter()
        return submitted, first, time.perf_counter(), count

    short = tokenize(chatml(SHORT_PROMPT))
    generate(short, 2)
    submitted, first, done, count = generate(short, DECODE_TOKENS)
    long_tokens = _long_prompt_tokens(tokenize)
    long_submitted, long_first, _, _ = generate(long_tokens, 1)
    return {
        "load_s": load_s,
        "prompt_tokens": len(short),
        "ttft_s": first - submitted,
        "decode_tps": (count - 1) / (done - first),
        "prefill_tps": len(long_tokens) / (long_first - long_submitted),
        "rss_mb": rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
    }


def _long_prompt_tokens(tokenize) -> list[int]:
    text = "The history of the Great Wall of China spans more than two thousand years. " * 60
    tokens = tokenize(chatml(text))
    return tokens[: LONG_PROMPT_TOKENS - 5] + tokenize("<|im_end|>\n<|im_start|>assistant\n")


WORKERS = {"jisu": measure_jisu, "llama-cpp-python Llama": measure_reference}
ROWS = [
    ("load time", "load_s", "s", False),
    ("time to first token (81-token prompt)", "ttft_s", "s", False),
    (f"prefill ({LONG_PROMPT_TOKENS}-token prompt)", "prefill_tps", "tok/s", True),
    (f"decode ({DECODE_TOKENS} tokens)", "decode_tps", "tok/s", True),
    ("RSS after the run", "rss_mb", "MB", False),
    ("peak RSS (includes the model file read at load)", "peak_rss_mb", "MB", False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="alias or GGUF path (default: the stand-in)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.model, args.threads, args.ctx)))
        return
    if not args.model:
        from jisu.models.registry import STANDIN_ALIAS

        args.model = STANDIN_ALIAS

    results: dict[str, list[dict]] = {name: [] for name in WORKERS}
    for round_ in range(args.rounds):
        for name in WORKERS:
            output = subprocess.run(
                [sys.executable, __file__, "--worker", name, "--model", args.model,
                 "--threads", str(args.threads), "--ctx", str(args.ctx)],
                capture_output=True, text=True, check=True,
            ).stdout
            results[name].append(json.loads(output.strip().splitlines()[-1]))
            print(f"round {round_ + 1}/{args.rounds} {name}: {results[name][-1]}", file=sys.stderr)

    print(f"\nmodel {args.model}, {args.threads} threads, n_ctx {args.ctx}, medians of {args.rounds} runs\n")
    ours, ref = "jisu", "llama-cpp-python Llama"
    print(f"| figure | {ours} | {ref} | jisu / reference |")
    print("|---|---|---|---|")
    for label, key, unit, higher_is_better in ROWS:
        a = statistics.median(r[key] for r in results[ours])
        b = statistics.median(r[key] for r in results[ref])
        ratio = a / b if b else float("nan")
        print(f"| {label} | {a:.2f} {unit} | {b:.2f} {unit} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
