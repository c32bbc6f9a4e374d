"""Which quantization runs fastest on this CPU, and what it costs in quality.

For each format: file size, decode speed with 1 and 8 streams, prefill speed (all through
the same raw llama.cpp loop, so only the format differs), and perplexity on a fixed text of
Chinese and English prose (benchmarks/data/prose_zh_en.txt, 512-token windows, the second
half of each window scored, as llama.cpp's llama-perplexity does).

Formats other than the source file are made with `jisu quantize` (requantizing the
stand-in, which is all we can fetch here; from Qwen's fp16 file the quality loss is smaller).

    .venv/bin/python benchmarks/bench_quant.py [--formats q4_0,iq4_nl] [--rounds 3]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "prose_zh_en.txt"
WINDOW = 512
FORMATS = ["q8_0", "q5_0", "q4_k_m", "q4_k_s", "q4_0", "iq4_nl", "iq4_xs"]


def perplexity(model_path: str, threads: int) -> dict:
    import llama_cpp.llama_cpp as C

    keep = C.llama_log_callback(lambda level, text, data: None)
    C.llama_log_set(keep, ctypes.c_void_p(0))
    C.llama_backend_init()
    model = C.llama_model_load_from_file(model_path.encode(), C.llama_model_default_params())
    vocab = C.llama_model_get_vocab(model)
    n_vocab = C.llama_vocab_n_tokens(vocab)
    params = C.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = WINDOW
    params.n_threads = params.n_threads_batch = threads
    ctx = C.llama_init_from_model(model, params)
    data = TEXT.read_bytes()
    buffer = (C.llama_token * len(data))()
    count = C.llama_tokenize(vocab, data, len(data), buffer, len(data), False, False)
    tokens = list(buffer[:count])
    batch = C.llama_batch_init(WINDOW, 0, 1)
    nll, scored = 0.0, 0
    for start in range(0, len(tokens) - WINDOW + 1, WINDOW):
        window = tokens[start:start + WINDOW]
        C.llama_memory_clear(C.llama_get_memory(ctx), True)
        batch.n_tokens = WINDOW
        for i, token in enumerate(window):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.seq_id[i][0] = token, i, 1, 0
            batch.logits[i] = int(i >= WINDOW // 2 - 1)
        assert C.llama_decode(ctx, batch) == 0
        for i in range(WINDOW // 2 - 1, WINDOW - 1):
            logits = np.ctypeslib.as_array(C.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).astype(np.float64)
            top = logits.max()
            log_z = top + math.log(np.exp(logits - top).sum())
            nll += log_z - logits[window[i + 1]]
            scored += 1
    C.llama_batch_free(batch)
    C.llama_free(ctx)
    C.llama_model_free(model)
    del keep
    return {"perplexity": math.exp(nll / scored), "tokens": len(tokens), "scored": scored}


def worker(kind: str, model: str, threads: int) -> dict:
    sys.path.insert(0, str(HERE))
    from raw_llama import raw_decode

    prompt = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
              "Write a long essay about rivers.<|im_end|>\n<|im_start|>assistant\n")
    if kind == "decode1":
        return raw_decode(model, threads, 1, prompt, 64)
    if kind == "decode8":
        return raw_decode(model, threads, 8, prompt, 64)
    if kind == "prefill":
        long_prompt = "The river carries stories from the mountains to the sea. " * 44  # ~500 tokens
        figures = raw_decode(model, threads, 1, long_prompt, 2)
        return {"prefill_tokens_per_s": figures["prompt_tokens"] / figures["time_to_first_token_s"]}
    return perplexity(model, threads)


def run_worker(kind: str, model: str, threads: int) -> dict:
    output = subprocess.run([sys.executable, __file__, "--worker", kind, "--model", model,
                             "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.threads)))
        return

    from jisu.engine.quantize import quantize
    from jisu.models.registry import STANDIN_ALIAS
    from jisu.models.resolve import resolve_model

    # the file as published: every other format is made from it
    source = Path(args.model) if args.model else resolve_model(STANDIN_ALIAS, quant="q4_k_m", quiet=True).path
    scratch = Path(tempfile.mkdtemp(prefix="jisu-quant-"))
    files = {"shipped file": source}
    for quant in args.formats.split(","):
        target = scratch / f"{quant}.gguf"
        quantize(source, target, quant, args.threads)
        files[quant] = target
    print(f"source {source.name}, {args.threads} threads, speed medians of {args.rounds} runs\n")
    print("| format | file | decode, 1 stream | decode, 8 streams | prefill | perplexity |")
    print("|---|---|---|---|---|---|")
    for name, path in files.items():
        decode1 = statistics.median(run_worker("decode1", str(path), args.threads)["per_stream_tokens_per_s"]
                                    for _ in range(args.rounds))
        prefill = statistics.median(run_worker("prefill", str(path), args.threads)["prefill_tokens_per_s"]
                                    for _ in range(args.rounds))
        decode8 = run_worker("decode8", str(path), args.threads)["aggregate_tokens_per_s"]
        ppl = run_worker("perplexity", str(path), args.threads)
        print(f"| {name} | {path.stat().st_size / 1e6:.0f} MB | {decode1:.1f} tok/s | {decode8:.1f} tok/s | "
              f"{prefill:.0f} tok/s | {ppl['perplexity']:.2f} |", flush=True)
    print(f"\nperplexity over {ppl['scored']} scored tokens of {TEXT.name} ({ppl['tokens']} tokens)")
    for path in scratch.iterdir():
        path.unlink()
    scratch.rmdir()


if __name__ == "__main__":
    main()
