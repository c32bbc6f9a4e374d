"""Serving benchmarks: jisu beside llama.cpp's own llama-server, and both beside the ceiling.

One run, same GGUF file, same threads, 8 slots of 4,096 tokens for both servers (llama-server
built by build_llama_tools.sh from the llama.cpp jisu's wheel vendors: the same kernels).
Both servers stay up for the whole run and take turns, round by round, so a noisy minute of
this shared machine hits both. Every request goes through the OpenAI streaming API.

Scenarios:
  single    one stream, 128 new tokens: decode rate and time to first token
  batch8    8 concurrent streams x 128 tokens: output rate and decode rate (8 / median gap);
            jisu's event-loop CPU per streamed token; llama-cpp-python's server (one at a time)
  rewrite   a ~380-token JavaScript file rewritten as TypeScript: total time and decode rate
  document  a ~2,900-token document and one question: time to first token
  room      8 users who each ask again as soon as their answer ends, 10 turns, ~1.9k tokens of
            history by the 10th: the 10th turn's time to first token
  paste     a ~3,000-token document arrives while 4 answers stream: their gaps between tokens
  room_stored  the room again, jisu keeping each user's conversation: a turn sends only its new
            message with conversation_id (jisu only; set beside llama-server's plain room)
The ceiling, same file and threads, nothing else running: llama-bench (pp512, tg128) and
llama.cpp's batched decode loop through llama-cpp-python's low-level API (raw_llama.py).

    .venv/bin/pip install -e '.[bench]'   # llama_cpp.server's own dependencies
    .venv/bin/python benchmarks/bench_serving.py [--model PATH] [--rounds 3] [--only single,room]
                                                 [--jisu-args "--flash-attn on"]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import StreamResult, run_load, stream_chat  # noqa: E402
from servers import (  # noqa: E402
    cpu_seconds_by_side,
    jisu_server,
    llama_cpp_server,
    llama_server,
    llama_tools,
    peak_rss_mb,
)
from standin import chatml, standin_path  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
NEW_TOKENS = 128
SLOTS, SLOT_CTX = 8, 4096
TOPICS = ["rivers", "mountains", "bread", "trains", "tea", "maps", "rain", "lighthouses"]
SCENARIOS = ["single", "batch8", "rewrite", "document", "room", "paste", "room_stored"]


def essay_request(i: int, max_tokens: int = NEW_TOKENS, variant: int = 0) -> dict:
    """A request that writes `max_tokens` tokens (~48 prompt tokens with Qwen's default
    system prompt); `variant` makes it new to the server, so rounds measure cold prompts."""
    topic = TOPICS[i % len(TOPICS)]
    return {"temperature": 0, "max_tokens": max_tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": f"Write a long essay about {topic} (draft {variant})."}]}


def decode_rate(result: StreamResult) -> float:
    return 1 / result.tpot_s if result.tpot_s else float("nan")


def check(results: list[StreamResult]) -> list[StreamResult]:
    failed = [r.error for r in results if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} request(s) failed: {failed[0]}")
    return results


# ---- scenarios: each takes a server's URL and the round, and returns its figures ------------


async def single(url: str, round_: int, **_) -> dict:
    result = check((await run_load(url, [essay_request(0, variant=round_)], 1)).results)[0]
    return {"decode": decode_rate(result), "ttft": result.ttft_s, "prompt_tokens": result.prompt_tokens}


async def batch8(url: str, round_: int, pid: int | None = None, engine_named: bool = False) -> dict:
    before = cpu_seconds_by_side(pid) if engine_named else None
    summary = await run_load(url, [essay_request(i, variant=round_) for i in range(8)], 8)
    check(summary.results)
    figures = {"output": summary.output_throughput, "decode": 8 / summary.itl(50),
               "ttft": summary.ttft(50), "itl_p99": summary.itl(99)}
    if before is not None:
        engine, http = (now - then for now, then in zip(cpu_seconds_by_side(pid), before))
        tokens = sum(r.output_tokens for r in summary.ok)
        figures |= {"http_ms_per_token": 1000 * http / tokens, "engine_cpu_s": engine, "wall_s": summary.wall_s}
    return figures


async def rewrite(url: str, round_: int, **_) -> dict:
    code = (DATA / "inventory.js").read_text()
    body = {"temperature": 0, "max_tokens": 1024, "messages": [{"role": "user", "content":
            f"Rewrite this JavaScript module as TypeScript (version {round_}), with types for "
            f"every function and field. Answer with the code only.\n\n```js\n{code}```"}]}
    async with httpx.AsyncClient(timeout=900) as client:
        result = check([await stream_chat(client, url, body)])[0]
    return {"total": result.latency_s, "decode": decode_rate(result), "output_tokens": result.output_tokens,
            "prompt_tokens": result.prompt_tokens}


async def document(url: str, round_: int, **_) -> dict:
    text = (DATA / "prose_zh_en.txt").read_text()[:5600]  # ~2,900 tokens of Chinese and English
    body = {"temperature": 0, "max_tokens": 32, "messages": [{"role": "user", "content":
            f"Document {round_}:\n{text}\n\nWhich places does this document describe? One sentence."}]}
    async with httpx.AsyncClient(timeout=900) as client:
        result = check([await stream_chat(client, url, body)])[0]
    return {"ttft": result.ttft_s, "prompt_tokens": result.prompt_tokens}


ROOM_TURNS = 10
ROOM_QUESTIONS = [
    "What is the first thing the notes describe?", "Who works there, according to the notes?",
    "Summarise the second part in two sentences.", "What would a visitor notice first?",
    "Which detail surprised you most, and why?", "Describe the same place in winter.",
    "What problems do the people in the notes face?", "How could they solve them?",
    "Write a short title for these notes.", "Why that title? Tell me more about it.",
]


def room_system_prompt(user: int, round_: int) -> str:
    """A user's own notes (~650 tokens): every conversation starts with its own context."""
    text = (DATA / "prose_zh_en.txt").read_text()
    start = 600 * ((user + 8 * round_) % 8)
    return f"You are the reading assistant of group {user}-{round_}. Their notes:\n{text[start:start + 1100]}"


async def room(url: str, round_: int, stored: bool = False, **_) -> dict:
    """Each user asks, reads the answer, and asks again at once; answers of 64-128 tokens
    and starts spread over 3 s keep them out of step, so a new turn usually arrives while
    the other seven answers stream. `stored`: each user keeps a conversation on the server
    (jisu's /v1/conversations) and sends only the new message with its conversation_id."""
    async def user(client, number: int) -> list[StreamResult]:
        rng = random.Random(1000 * round_ + number)
        await asyncio.sleep(rng.uniform(0, 3))
        system = room_system_prompt(number, round_)
        messages, turns = [{"role": "system", "content": system}], []
        stored_as = {}
        if stored:
            created = await client.post(f"{url}/v1/conversations", json={"system": system})
            stored_as = {"conversation_id": created.raise_for_status().json()["id"]}
        for question in ROOM_QUESTIONS[:ROOM_TURNS]:
            messages.append({"role": "user", "content": question})
            sent = [messages[-1]] if stored else messages
            body = {"messages": sent, "temperature": 0, "max_tokens": rng.randint(64, 128), "ignore_eos": True,
                    **stored_as}
            turns.append(check([await stream_chat(client, url, body)])[0])
            messages.append({"role": "assistant", "content": turns[-1].text})
        return turns

    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=16)) as client:
        users = await asyncio.gather(*(user(client, n) for n in range(8)))
    last = [turns[-1] for turns in users]
    return {"ttft_p50": statistics.median(r.ttft_s for r in last), "ttft_max": max(r.ttft_s for r in last),
            "all_turns_ttft_p50": statistics.median(r.ttft_s for turns in users for r in turns),
            "history_tokens": statistics.median(r.prompt_tokens for r in last)}


async def paste(url: str, round_: int, **_) -> dict:
    """Four answers stream when someone sends a ~3,000-token document: the gaps between
    their tokens while it is read, and how long the document waits for its first token."""
    text = " ".join(f"Line {i} of report {round_}: the quick brown fox jumps over the lazy dog near the river bank."
                    for i in range(135))
    streams = [asyncio.create_task(run_load(url, [essay_request(i, 200, variant=round_)], 1)) for i in range(4)]
    await asyncio.sleep(3)  # the four answers are streaming
    async with httpx.AsyncClient(timeout=900) as client:
        long = check([await stream_chat(client, url, {"max_tokens": 16, "temperature": 0, "messages": [
            {"role": "user", "content": "Summarise this document:\n" + text}]})])[0]
    gaps = [gap for summary in await asyncio.gather(*streams) for r in check(summary.results) for gap in r.itl_s]
    return {"gap_p50": statistics.median(gaps), "gap_max": max(gaps), "ttft": long.ttft_s}


async def room_stored(url: str, round_: int, **_) -> dict:
    return await room(url, round_, stored=True)


SCENARIO_FUNCTIONS = {"single": single, "batch8": batch8, "rewrite": rewrite, "document": document, "room": room,
                      "paste": paste, "room_stored": room_stored}
JISU_ONLY = {"room_stored"}  # llama-server keeps no conversations


# ---- the ceiling ----------------------------------------------------------------------------


def llama_bench(model: str, threads: int, rounds: int) -> dict:
    output = subprocess.run([str(llama_tools() / "llama-bench"), "-m", model, "-t", str(threads), "-p", "512",
                             "-n", "128", "-r", str(rounds), "-o", "json"], capture_output=True, text=True, check=True)
    tests = json.loads(output.stdout)
    rate = {("pp512" if t["n_prompt"] else "tg128"): statistics.median(t["samples_ts"]) for t in tests}
    return rate


def raw_loop(model: str, threads: int, n_sequences: int) -> dict:
    """llama.cpp's batched decode loop (raw_llama.py), in its own process like the servers."""
    prompt = chatml(f"Write a long essay about {TOPICS[0]}.")
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from raw_llama import raw_decode; "
            f"print(json.dumps(raw_decode({model!r}, {threads}, {n_sequences}, {prompt!r}, {NEW_TOKENS})))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


# ---- the run --------------------------------------------------------------------------------


def median(rows: list[dict], key: str) -> float:
    values = [row[key] for row in rows if key in row]
    return statistics.median(values) if values else float("nan")


def run_rounds(model: str, threads: int, rounds: int, chosen: list[str], with_llama_cpp_server: bool,
               jisu_args: list[str] = ()):
    figures: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    with jisu_server(model, threads, SLOTS, SLOT_CTX, jisu_args) as (jisu_url, jisu_pid), \
            llama_server(model, threads, SLOTS, SLOT_CTX) as (reference_url, reference_pid):
        servers = [("jisu", jisu_url, jisu_pid), ("llama-server", reference_url, reference_pid)]
        for round_ in range(rounds):
            for scenario in chosen:
                order = servers if round_ % 2 == 0 else servers[::-1]  # neither always goes first
                for name, url, pid in order:
                    if scenario in JISU_ONLY and name != "jisu":
                        continue
                    result = asyncio.run(SCENARIO_FUNCTIONS[scenario](
                        url, round_, pid=pid, engine_named=name == "jisu"))
                    figures[scenario][name].append(result)
                    print(f"  round {round_ + 1} {scenario} {name}: "
                          + ", ".join(f"{k} {v:.3g}" for k, v in result.items()), file=sys.stderr)
            figures["ceiling"]["llama-bench"].append(llama_bench(model, threads, 1))
            figures["ceiling"]["raw1"].append(raw_loop(model, threads, 1))
            figures["ceiling"]["raw8"].append(raw_loop(model, threads, 8))
        rss = {"jisu": peak_rss_mb(jisu_pid), "llama-server": peak_rss_mb(reference_pid)}
    if with_llama_cpp_server and "batch8" in chosen and all(importlib.util.find_spec(m) for m in ("sse_starlette", "starlette_context")):
        with llama_cpp_server(model, threads, SLOT_CTX) as (url, pid):
            for round_ in range(rounds):
                figures["batch8"]["llama_cpp.server"].append(asyncio.run(batch8(url, round_)))
            rss["llama_cpp.server"] = peak_rss_mb(pid)
    return figures, rss


def report(figures, rss, rounds: int) -> None:
    ceiling = figures["ceiling"]
    tg128, pp512 = median(ceiling["llama-bench"], "tg128"), median(ceiling["llama-bench"], "pp512")
    raw1, raw8 = median(ceiling["raw1"], "per_stream_tokens_per_s"), median(ceiling["raw8"], "aggregate_tokens_per_s")
    print(f"\nmedians of {rounds} rounds; advantage > 1 means jisu is ahead (rates: jisu / llama-server, "
          "times: llama-server / jisu)\n")
    print("| scenario (OpenAI streaming API) | jisu | llama-server | advantage |")
    print("|---|---|---|---|")

    def row(label, scenario, key, unit, higher_is_better=True, fmt="{:.1f}"):
        if scenario not in figures:
            return
        ours, theirs = median(figures[scenario]["jisu"], key), median(figures[scenario]["llama-server"], key)
        advantage = ours / theirs if higher_is_better else theirs / ours
        print(f"| {label} | {fmt.format(ours)} {unit} | {fmt.format(theirs)} {unit} | {advantage:.2f}× |")

    row("1 stream, 128 tokens: decode", "single", "decode", "tok/s")
    row("1 stream: time to first token (~48-token prompt)", "single", "ttft", "s", False, "{:.2f}")
    row("8 concurrent streams × 128 tokens: output, end to end", "batch8", "output", "tok/s")
    row("8 streams: decode (8 / median inter-token gap)", "batch8", "decode", "tok/s")
    row("8 streams: time to first token p50", "batch8", "ttft", "s", False, "{:.2f}")
    row("a ~380-token JS file rewritten as TypeScript: total", "rewrite", "total", "s", False)
    row("same: decode rate", "rewrite", "decode", "tok/s")
    row("a ~2,900-token document, one question: time to first token", "document", "ttft", "s", False)
    row("room of 8, 10 turns each: 10th turn's time to first token, p50", "room", "ttft_p50", "s", False, "{:.2f}")
    row("same: the slowest 10th turn", "room", "ttft_max", "s", False, "{:.2f}")
    row("same: every turn's time to first token, p50", "room", "all_turns_ttft_p50", "s", False, "{:.2f}")
    if "room_stored" in figures and "room" in figures:
        stored, plain = figures["room_stored"]["jisu"], figures["room"]["llama-server"]
        for label, key in (("10th turn's time to first token, p50", "ttft_p50"), ("the slowest 10th turn", "ttft_max"),
                           ("every turn's first token, p50", "all_turns_ttft_p50")):
            ours, theirs = median(stored, key), median(plain, key)
            print(f"| same room, jisu keeping the conversations (conversation_id): {label} | {ours:.2f} s | "
                  f"{theirs:.2f} s (whole history sent) | {theirs / ours:.2f}× |")
    row("a ~3,000-token paste while 4 answers stream: their longest gap", "paste", "gap_max", "s", False, "{:.2f}")
    row("same: their median gap", "paste", "gap_p50", "s", False, "{:.3f}")
    row("same: the paste's time to first token", "paste", "ttft", "s", False)
    print(f"\nceiling, same file and threads: llama-bench tg128 {tg128:.1f} tok/s, pp512 {pp512:.0f} tok/s; "
          f"raw decode loop 1 sequence {raw1:.1f} tok/s, 8 sequences {raw8:.1f} tok/s")
    if "single" in figures:
        print(f"1 stream: jisu {median(figures['single']['jisu'], 'decode') / tg128:.2f}× llama-bench tg128, "
              f"llama-server {median(figures['single']['llama-server'], 'decode') / tg128:.2f}×")
    if "batch8" in figures:
        batch = figures["batch8"]
        print(f"8 streams: jisu {median(batch['jisu'], 'decode') / raw8:.2f}× the raw batched loop, "
              f"llama-server {median(batch['llama-server'], 'decode') / raw8:.2f}×")
        print(f"jisu's event loop and HTTP: {median(batch['jisu'], 'http_ms_per_token'):.2f} ms of CPU per "
              f"streamed token (threads other than the engine's, during the 8-stream load)")
        if batch.get("llama_cpp.server"):
            print(f"python -m llama_cpp.server, same 8 streams (one at a time): "
                  f"{median(batch['llama_cpp.server'], 'output'):.1f} tok/s end to end")
    for name in ("single", "rewrite", "document", "room"):
        if name in figures:
            tokens = [k for k in ("prompt_tokens", "output_tokens", "history_tokens") if k in figures[name]["jisu"][0]]
            print(f"{name}: " + ", ".join(f"{k} jisu {median(figures[name]['jisu'], k):.0f} / llama-server "
                                          f"{median(figures[name]['llama-server'], k):.0f}" for k in tokens))
    print("peak RSS: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="GGUF path (default: the cached stand-in)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--no-llama-cpp-server", action="store_true", help="skip llama-cpp-python's server")
    parser.add_argument("--jisu-args", default="", help="more flags for jisu serve, e.g. '--flash-attn on'")
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    args.model = standin_path(args.model)
    llama_tools()  # built before anything is timed
    print(f"model {Path(args.model).name}, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"{SLOTS} slots of {SLOT_CTX} tokens" + (f", jisu serve {args.jisu_args}" if args.jisu_args else ""))
    figures, rss = run_rounds(args.model, args.threads, args.rounds, chosen, not args.no_llama_cpp_server,
                              shlex.split(args.jisu_args))
    report(figures, rss, args.rounds)


if __name__ == "__main__":
    main()
