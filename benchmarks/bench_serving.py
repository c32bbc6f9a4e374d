"""Serving benchmarks: jisu against llama.cpp itself and llama-cpp-python's server, one run.

Scenarios (stand-in model, same file and threads for everyone):
  1 single   one stream, 128 new tokens: jisu serve vs the raw low-level decode loop
  2 batch8   8 concurrent streams x 128 tokens: jisu vs raw batched decode of 8 sequences
             vs `python -m llama_cpp.server` under the same load
  3 turns    8 users, each with ~2,000 tokens of history: TTFT of their 10th turn
  4 long     4 streams decoding when a 3,000-token prompt arrives: their inter-token gaps
  and the servers' peak RSS. Medians over --rounds runs where a scenario is repeated.

    .venv/bin/pip install -e '.[bench]'   # llama_cpp.server's own dependencies
    .venv/bin/python benchmarks/bench_serving.py [--model PATH] [--rounds 3] [--only batch8,long]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import percentile, run_load, stream_chat  # noqa: E402
from standin import standin_path  # noqa: E402

NEW_TOKENS = 128
TOPICS = ["rivers", "mountains", "bread", "trains", "tea", "maps", "rain", "lighthouses"]


def essay_request(i: int, max_tokens: int = NEW_TOKENS, variant: int = 0) -> dict:
    """A request that writes `max_tokens` tokens; `variant` makes the prompt new to the
    server, so repeated rounds measure cold prompts rather than the prefix cache."""
    topic = TOPICS[i % len(TOPICS)]
    return {"temperature": 0, "max_tokens": max_tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": f"Write a long essay about {topic} (draft {variant})."}]}


def chatml(text: str) -> str:
    """The prompt exactly as jisu renders it (with Qwen's default system prompt)."""
    from jisu.engine.template import prompt_text, render_chat
    from jisu.types import ChatMessage

    return prompt_text(render_chat([ChatMessage("user", text)]))


# ---- servers ------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(command: list[str], port: int, log_name: str):
    log = open(Path("/tmp") / f"bench-{log_name}.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{log_name} exited; see /tmp/bench-{log_name}.log")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{log_name} did not start")
            time.sleep(0.5)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def jisu_server(model: str, threads: int, parallel: int, ctx: int, extra: list[str] = ()):
    port = free_port()
    return server([sys.executable, "-m", "jisu.cli", "serve", "--model", model, "--port", str(port),
                   "--threads", str(threads), "--parallel", str(parallel), "--ctx-size", str(ctx), *extra],
                  port, f"jisu-p{parallel}")


def llama_cpp_server(model: str, threads: int, ctx: int):
    port = free_port()
    return server([sys.executable, "-m", "llama_cpp.server", "--model", model, "--port", str(port),
                   "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(ctx)],
                  port, "llama_cpp_server")


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def raw(model: str, threads: int, n_sequences: int) -> dict:
    """The raw llama.cpp loop, in its own process like the servers."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from raw_llama import raw_decode; "
            f"print(json.dumps(raw_decode({model!r}, {threads}, {n_sequences}, "
            f"{chatml('Write a long essay about ' + TOPICS[0] + '.')!r}, {NEW_TOKENS})))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


# ---- scenarios ----------------------------------------------------------------------------


def run(coroutine):
    return asyncio.run(coroutine)


def scenario_single(model, threads, rounds):
    ours, reference = [], []
    with jisu_server(model, threads, parallel=8, ctx=4096) as (url, pid):
        for round_ in range(rounds):
            summary = run(run_load(url, [essay_request(0, variant=round_)], 1))
            result = summary.ok[0]
            ours.append((result.ttft_s, 1 / result.tpot_s))
        rss = peak_rss_mb(pid)
    for _ in range(rounds):
        figures = raw(model, threads, 1)
        reference.append((figures["time_to_first_token_s"], figures["per_stream_tokens_per_s"]))
    jisu_tps = statistics.median(t for _, t in ours)
    raw_tps = statistics.median(t for _, t in reference)
    print(f"\n1. single stream, {NEW_TOKENS} new tokens (medians of {rounds})")
    print("| | time to first token | decode tok/s |")
    print("|---|---|---|")
    print(f"| jisu serve | {statistics.median(t for t, _ in ours):.2f} s | {jisu_tps:.1f} |")
    print(f"| llama.cpp raw loop | {statistics.median(t for t, _ in reference):.2f} s | {raw_tps:.1f} |")
    print(f"jisu / raw decode: {jisu_tps / raw_tps:.2f}x; jisu peak RSS {rss:.0f} MB")


def scenario_batch8(model, threads, rounds, with_llama_cpp_server=True):
    def bodies(round_):
        return [essay_request(i, variant=round_) for i in range(8)]

    ours, servers = [], []
    with jisu_server(model, threads, parallel=8, ctx=4096) as (url, pid):
        for round_ in range(rounds):
            ours.append(run(run_load(url, bodies(round_), 8)))
        jisu_rss = peak_rss_mb(pid)
    if with_llama_cpp_server:
        with llama_cpp_server(model, threads, ctx=4096) as (url, pid):
            for round_ in range(rounds):
                servers.append(run(run_load(url, bodies(round_), 8)))
            server_rss = peak_rss_mb(pid)
    reference = [raw(model, threads, 8) for _ in range(rounds)]
    print(f"\n2. 8 concurrent streams x {NEW_TOKENS} tokens (medians of {rounds})")
    print("| | output tok/s, end to end | decode tok/s (8 / ITL p50) | TTFT p50 | ITL p99 | peak RSS |")
    print("|---|---|---|---|---|---|")

    def row(name, summaries, rss, concurrent=True):
        e2e = statistics.median(s.output_throughput for s in summaries)
        itl50 = statistics.median(s.itl(50) for s in summaries)
        decode = f"{8 / itl50:.1f}" if concurrent else "(one stream at a time)"
        print(f"| {name} | {e2e:.1f} | {decode} | {statistics.median(s.ttft(50) for s in summaries):.2f} s | "
              f"{statistics.median(s.itl(99) for s in summaries) * 1000:.0f} ms | {rss:.0f} MB |")
        return e2e, 8 / itl50

    jisu_e2e, jisu_decode = row("jisu serve --parallel 8", ours, jisu_rss)
    server_e2e = row("python -m llama_cpp.server", servers, server_rss, concurrent=False)[0] if servers else float("nan")
    raw_e2e = statistics.median(r["end_to_end_tokens_per_s"] for r in reference)
    raw_decode = statistics.median(r["aggregate_tokens_per_s"] for r in reference)
    print(f"| llama.cpp raw batched loop, 8 sequences | {raw_e2e:.1f} | {raw_decode:.1f} | "
          f"{statistics.median(r['time_to_first_token_s'] for r in reference):.2f} s | | |")
    print(f"jisu / raw: {jisu_e2e / raw_e2e:.2f}x end to end, {jisu_decode / raw_decode:.2f}x decode; "
          f"jisu / llama_cpp.server: {jisu_e2e / server_e2e:.2f}x end to end")


HISTORY_TURNS = [
    "Tell me about the history of the river {n} and the towns along it.",
    "What crops grow in the valley of river {n}, and why?",
    "Describe a festival held on the banks of river {n}.",
    "How did bridges change life along river {n}?",
    "What fish live in river {n}, and how are they caught?",
    "Tell me about a flood on river {n} and how people recovered.",
    "How do boats on river {n} navigate at night?",
    "What stories do grandparents tell about river {n}?",
]


def synthetic_answer(user: int, turn: int) -> str:
    """Stand-in earlier answers (the client sends history as it has it)."""
    rng = random.Random(user * 100 + turn)
    words = ["water", "valley", "stone", "village", "boat", "market", "summer", "bridge", "willow",
             "harvest", "lantern", "current", "mill", "ferry", "orchard", "bank"]
    return " ".join(rng.choice(words) for _ in range(170)) + "."


def history(user: int) -> list[dict]:
    """Nine turns of a conversation about one river: about 2,000 tokens."""
    messages = [{"role": "system", "content": "You are a helpful assistant who knows rivers."}]
    for turn, question in enumerate(HISTORY_TURNS):
        messages += [{"role": "user", "content": question.format(n=user)},
                     {"role": "assistant", "content": synthetic_answer(user, turn)}]
    messages.append({"role": "user", "content": f"Which town on river {user} would you visit first?"})
    return messages


async def ninth_turn(client, url: str, user: int) -> list[dict]:
    """Turn 9, answered for real: the server now holds this conversation, as it would after
    a user had chatted for a while."""
    messages = history(user)
    answer = await stream_chat(client, url, {"messages": messages, "max_tokens": 48, "temperature": 0})
    if answer.error:
        raise RuntimeError(answer.error)
    return messages + [{"role": "assistant", "content": answer.text}]


async def tenth_turn(client, url: str, messages: list[dict], delay_s: float):
    await asyncio.sleep(delay_s)  # people ask at different moments
    messages = messages + [{"role": "user", "content": "Why that one? Tell me more about it."}]
    answer = await stream_chat(client, url, {"messages": messages, "max_tokens": 64, "temperature": 0})
    if answer.error:
        raise RuntimeError(answer.error)
    return answer


def scenario_turns(model, threads, rounds):
    async def room(url, round_):
        async with httpx.AsyncClient(timeout=900) as client:
            users = range(8 * round_, 8 * round_ + 8)  # new conversations every round
            conversations = [await ninth_turn(client, url, user) for user in users]
            rng = random.Random(7 + round_)
            return await asyncio.gather(*(tenth_turn(client, url, messages, rng.uniform(0, 4))
                                          for messages in conversations))

    with jisu_server(model, threads, parallel=8, ctx=4096) as (url, pid):
        rows = [run(room(url, round_)) for round_ in range(rounds)]
        rss = peak_rss_mb(pid)
    print(f"\n3. 8 users, ~2,000 tokens of history each, asking their 10th question within 4 s of each other "
          f"(medians of {rounds} rounds)")
    for round_, answers in enumerate(rows):
        print(f"round {round_ + 1}: " + ", ".join(f"{a.ttft_s:.2f}" for a in sorted(answers, key=lambda a: a.ttft_s)))
    answers = [a for row in rows for a in row]
    new = [a.prompt_tokens - a.cached_tokens for a in answers]
    print(f"time to first token: median {statistics.median(statistics.median(a.ttft_s for a in row) for row in rows):.2f} s, "
          f"max {statistics.median(max(a.ttft_s for a in row) for row in rows):.2f} s, "
          f"worst of all {max(a.ttft_s for a in answers):.2f} s; prompts of "
          f"{min(a.prompt_tokens for a in answers)}-{max(a.prompt_tokens for a in answers)} tokens of which "
          f"{min(new)}-{max(new)} were new; jisu peak RSS {rss:.0f} MB")


def scenario_long(model, threads, rounds):
    def document(round_):
        return " ".join(f"Line {i} of report {round_}: the quick brown fox jumps over the lazy dog near "
                        f"the river bank." for i in range(135))  # ~3,000 tokens

    async def one_round(url, round_):
        decoders = [asyncio.create_task(run_load(url, [essay_request(i, 200, variant=round_)], 1))
                    for i in range(4)]
        await asyncio.sleep(3)  # the four answers are streaming
        async with httpx.AsyncClient(timeout=900) as client:
            long = await stream_chat(client, url, {"max_tokens": 16, "temperature": 0, "messages": [
                {"role": "user", "content": "Summarise this document:\n" + document(round_)}]})
            if long.error:
                raise RuntimeError(long.error)
        summaries = await asyncio.gather(*decoders)
        gaps = [gap for s in summaries for r in s.ok for gap in r.itl_s]
        return long, gaps

    rows = []
    with jisu_server(model, threads, parallel=8, ctx=4096) as (url, pid):
        for round_ in range(rounds):
            rows.append(run(one_round(url, round_)))
        rss = peak_rss_mb(pid)
    print(f"\n4. a ~3,000-token prompt arrives while 4 streams decode (medians of {rounds})")
    print(f"decode streams' inter-token gap: p50 {statistics.median(percentile(g, 50) for _, g in rows) * 1000:.0f} ms, "
          f"p99 {statistics.median(percentile(g, 99) for _, g in rows) * 1000:.0f} ms, "
          f"max {statistics.median(max(g) for _, g in rows) * 1000:.0f} ms; "
          f"long prompt's time to first token {statistics.median(r.ttft_s for r, _ in rows):.1f} s; "
          f"jisu peak RSS {rss:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="GGUF path (default: the cached stand-in)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="single,batch8,turns,long")
    args = parser.parse_args()
    args.model = standin_path(args.model)
    print(f"model {Path(args.model).name}, {args.threads} threads, {os.cpu_count()} CPUs")
    chosen = args.only.split(",")
    if "single" in chosen:
        scenario_single(args.model, args.threads, args.rounds)
    if "batch8" in chosen:
        scenario_batch8(args.model, args.threads, args.rounds)
    if "turns" in chosen:
        scenario_turns(args.model, args.threads, args.rounds)
    if "long" in chosen:
        scenario_long(args.model, args.threads, args.rounds)


if __name__ == "__main__":
    main()
