"""What constrained decoding costs per token: JSON-schema output vs free text, same prompt.

jisu's grammar sampler (llama.cpp's GBNF grammar, built from the schema by jisu's
GrammarBuilder) against llama-cpp-python's high-level `Llama` with the same grammar, each in
its own process, rounds alternating. The free run writes exactly as many tokens as the
constrained one, so the difference per token is the grammar's cost.

    .venv/bin/python benchmarks/bench_structured.py [--model PATH] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from standin import chatml, standin_path

PROMPT = "List twelve well-known cities of the world with their country, as JSON."
SCHEMA = {
    "type": "object",
    "properties": {"cities": {"type": "array", "minItems": 12, "maxItems": 12, "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
        "required": ["name", "country"]}}},
    "required": ["cities"],
}
MAX_TOKENS = 256


def grammar_text() -> str:
    from jisu.engine.grammar import schema_grammar

    return schema_grammar(SCHEMA)


def measure_jisu(model: str, threads: int) -> dict:
    from jisu.config import EngineConfig
    from jisu.models.resolve import resolve_model
    from jisu.runtime import Runtime
    from jisu.types import Finished, SamplingParams, TextDelta

    resolved = resolve_model(model, quiet=True)
    runtime = Runtime.load(resolved, EngineConfig(resolved.path, ctx_size=2048, threads=threads, parallel=1),
                           reuse_prefixes=False)

    def per_token_ms(params: SamplingParams) -> tuple[float, int, str]:
        first = None
        count, text = 0, []
        for event in runtime.stream(runtime.prepare_completion(chatml(PROMPT), params)):
            if isinstance(event, TextDelta):
                first = first or time.perf_counter()
                text.append(event.text)
            if isinstance(event, Finished):
                count = event.usage.completion_tokens
        return 1000 * (time.perf_counter() - first) / (count - 1), count, "".join(text)

    per_token_ms(SamplingParams(temperature=0, max_tokens=4))  # warm-up
    constrained_ms, count, text = per_token_ms(SamplingParams(temperature=0, max_tokens=MAX_TOKENS,
                                                              grammar=grammar_text()))
    free_ms, _, _ = per_token_ms(SamplingParams(temperature=0, max_tokens=count, ignore_eos=True))
    runtime.close()
    return {"constrained_ms": constrained_ms, "free_ms": free_ms, "tokens": count,
            "valid": _valid(text, count)}


def measure_reference(model: str, threads: int) -> dict:
    from llama_cpp import Llama, LlamaGrammar

    llm = Llama(model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    prompt = llm.tokenize(chatml(PROMPT).encode(), add_bos=False, special=True)
    grammar = LlamaGrammar.from_string(grammar_text(), verbose=False)

    def per_token_ms(max_tokens: int, **options) -> tuple[float, int, str]:
        llm.reset()
        first = None
        count, text = 0, []
        for chunk in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, stream=True, **options):
            first = first or time.perf_counter()
            count += 1
            text.append(chunk["choices"][0]["text"])
        return 1000 * (time.perf_counter() - first) / (count - 1), count, "".join(text)

    per_token_ms(4)
    constrained_ms, count, text = per_token_ms(MAX_TOKENS, grammar=grammar)
    # llama-cpp-python cannot ignore end-of-text; a logit bias against it does the same
    free_ms, _, _ = per_token_ms(count, logit_bias={llm.token_eos(): -1e9, 151645: -1e9})
    return {"constrained_ms": constrained_ms, "free_ms": free_ms, "tokens": count,
            "valid": _valid(text, count)}


def _valid(text: str, count: int) -> str:
    """'yes' for a complete schema-valid answer, 'cut' when max_tokens ended it first."""
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), SCHEMA)
        return "yes"
    except (ValueError, jsonschema.ValidationError):
        return "cut" if count >= MAX_TOKENS else "NO"


def run_child(which: str, model: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", which, "--model", model, "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["jisu", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = standin_path(args.model)
    if args.child:
        measure = measure_jisu if args.child == "jisu" else measure_reference
        print(json.dumps(measure(model, args.threads)))
        return
    runs: dict[str, list[dict]] = {"jisu": [], "reference": []}
    for _ in range(args.rounds):
        for which in runs:
            runs[which].append(run_child(which, model, args.threads))
    print(f"model {model.rsplit('/', 1)[-1]}, {args.threads} threads, medians of {args.rounds} rounds\n")
    print("| engine | free text | JSON schema | grammar cost per token | tokens | valid JSON |")
    print("|---|---|---|---|---|---|")
    for which, name in (("jisu", "jisu"), ("reference", "llama-cpp-python `Llama` + LlamaGrammar")):
        free = statistics.median(r["free_ms"] for r in runs[which])
        constrained = statistics.median(r["constrained_ms"] for r in runs[which])
        valid = ",".join(r["valid"] for r in runs[which])
        print(f"| {name} | {free:.1f} ms/token | {constrained:.1f} ms/token | {constrained - free:+.1f} ms "
              f"({constrained / free - 1:+.0%}) | {runs[which][0]['tokens']} | {valid} |")


if __name__ == "__main__":
    main()
