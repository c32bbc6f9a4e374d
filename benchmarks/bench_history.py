"""The conversation store's figures: listing 1,000 conversations, searching 10,000 messages, the
cost of recording a streamed answer, and the database's size per 1,000 turns.

One user's 1,000 conversations of 5 turns each (10,000 messages) are written into a new file
(through import_conversations, in one transaction: building is not what is measured). Messages
are sentences drawn at random (fixed seed) from benchmarks/data/prose_zh_en.txt, half the
conversations Chinese, half English; a question is 1-2 sentences, an answer 3-6. Other users'
conversations (--other-users, 1,000 each) share the file, as on a shared server. Each figure is
the median of --rounds runs, in milliseconds; the recording costs are medians over 200 turns
written as the server writes them (a question, an answer begun, 4 appends, the finish).

    .venv/bin/python benchmarks/bench_history.py [--rounds 15] [--other-users 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jisu.history import AnswerStats, ConversationStore
from jisu.history.records import ImportedConversation, ImportedMessage

PROSE = Path(__file__).parent / "data" / "prose_zh_en.txt"
CONVERSATIONS = 1000
TURNS = 5
USER = "bench"
QUERIES = {  # what is searched for: (kind, query)
    "CJK, 3 characters": "高原上",
    "CJK, 2 characters": "茶叶",
    "CJK, 2 characters, no match": "龙虾",
    "English, 3+ letters": "lighthouse",
    "English, 2 letters": "ox",
    "English, no match": "xylophone",
}


def sentences() -> tuple[list[str], list[str]]:
    chinese, english = PROSE.read_text(encoding="utf-8").split("## English")
    chinese_sentences = [s for s in re.split(r"(?<=[。！？])", chinese.replace("## 中文", "")) if s.strip()]
    english_sentences = [s for s in re.split(r"(?<=[.!?])\s+", english) if s.strip()]
    return [s.strip() for s in chinese_sentences], [s.strip() for s in english_sentences]


def made_up_conversation(number: int, user: str, rng: random.Random, pools: tuple[list[str], list[str]]
                         ) -> ImportedConversation:
    pool = pools[number % 2]
    joiner = "" if number % 2 == 0 else " "
    start = 1_700_000_000.0 + number * 3600
    messages, parent = [], None
    for turn in range(TURNS):
        for role, count in (("user", rng.randint(1, 2)), ("assistant", rng.randint(3, 6))):
            message_id = f"{number}-{turn}-{role}"
            messages.append(ImportedMessage(
                id=message_id, parent_id=parent, role=role, content=joiner.join(rng.sample(pool, count)),
                created_at=start + turn * 60 + (30 if role == "assistant" else 0),
                model="qwen2.5-0.5b-instruct" if role == "assistant" else None,
                quantization="iq4_nl" if role == "assistant" else None,
                finish_reason="stop" if role == "assistant" else None,
                stats=AnswerStats(120, 80, 0.2, 30.0) if role == "assistant" else AnswerStats()))
            parent = message_id
    title = rng.choice(pool)[:24]
    return ImportedConversation(source_key=f"bench:{user}:{number}", title=title, system=None, created_at=start,
                                updated_at=start + TURNS * 60, messages=tuple(messages), active_leaf_id=parent)


def median_ms(action, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def database_bytes(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0] - connection.execute(
            "PRAGMA freelist_count").fetchone()[0]
    return page_size * pages


def size_by_part(path: Path) -> dict[str, int] | None:
    """Bytes per table and index, search index included, where SQLite has the dbstat table."""
    try:
        with sqlite3.connect(path) as connection:
            rows = connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:
        return None
    parts: dict[str, int] = {}
    for name, size in rows:
        part = next((part for part in ("_fts", "messages", "conversations") if part in name), "other")
        part = {"_fts": "search index"}.get(part, part)
        parts[part] = parts.get(part, 0) + size
    return parts


def recording_costs(store: ConversationStore, turns: int = 200) -> dict[str, float]:
    """Milliseconds per call, as the server records a turn."""
    costs: dict[str, list[float]] = {name: [] for name in
                                     ("add_message", "begin_answer", "append_answer", "finish_answer")}

    def timed(name, call, *args, **kwargs):
        started = time.perf_counter()
        result = call(*args, **kwargs)
        costs[name].append((time.perf_counter() - started) * 1000)
        return result

    conversation = store.create_conversation(USER, title="recording")
    parent = None
    for turn in range(turns):
        question = timed("add_message", store.add_message, USER, conversation.id, parent_id=parent, role="user",
                         content=f"第{turn}个问题：高原上的茶叶怎么运输？")
        answer = timed("begin_answer", store.begin_answer, USER, conversation.id, parent_id=question.id)
        for _ in range(4):
            timed("append_answer", store.append_answer, USER, answer.id, "马帮驮着砖茶翻过高山，" * 3)
        parent = timed("finish_answer", store.finish_answer, USER, answer.id, finish_reason="stop",
                       stats=AnswerStats(100, 60, 0.2, 30.0)).id
    return {name: statistics.median(values) for name, values in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--other-users", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="build the database in this directory and keep it")
    args = parser.parse_args()

    directory = args.keep or Path(tempfile.mkdtemp(prefix="bench-history-"))
    path = directory / "history.db"
    if path.exists():
        sys.exit(f"{path} exists: give --keep a new directory")
    rng = random.Random(15)
    pools = sentences()
    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}; {path}")

    with ConversationStore(path) as store:
        started = time.perf_counter()
        for user in [USER] + [f"other{number}" for number in range(args.other_users)]:
            store.import_conversations(user, [made_up_conversation(number, user, rng, pools)
                                              for number in range(CONVERSATIONS)])
        conversations = (1 + args.other_users) * CONVERSATIONS
        print(f"built {conversations} conversations of {TURNS} turns ({conversations * TURNS * 2} messages) "
              f"in {time.perf_counter() - started:.1f} s")
        size = database_bytes(path)
        turns = conversations * TURNS
        with sqlite3.connect(path) as connection:
            text = connection.execute("SELECT SUM(LENGTH(CAST(content AS BLOB))) FROM messages").fetchone()[0]
        per_thousand_turns = 1000 / turns / 1e6  # bytes -> MB per 1,000 turns
        print(f"\ndatabase: {size / 1e6:.2f} MB for {turns} turns = {size * per_thousand_turns:.2f} MB "
              f"per 1,000 turns (the text itself, UTF-8: {text * per_thousand_turns:.2f} MB)")
        parts = size_by_part(path)
        if parts:
            print("  of which " + ", ".join(f"{name} {part_bytes * per_thousand_turns:.2f} MB" for name, part_bytes
                                            in sorted(parts.items(), key=lambda item: -item[1])))

        print(f"\nmedians of {args.rounds} runs, {USER!r} has {CONVERSATIONS} conversations, "
              f"{CONVERSATIONS * TURNS * 2} messages:")
        first_page = store.list_conversations(USER, limit=50)
        assert first_page.total == CONVERSATIONS
        some_id = first_page.items[10].id
        reads = {
            "list, first page of 50 and the total": lambda: store.list_conversations(USER, limit=50),
            "list, last page of 50 (offset 950)": lambda: store.list_conversations(USER, limit=50, offset=950),
            "get one conversation (10 messages)": lambda: store.get_conversation(USER, some_id),
        }
        for name, read in reads.items():
            print(f"  {name:48} {median_ms(read, args.rounds):7.2f} ms")
        for kind, query in QUERIES.items():
            total = store.search(USER, query).total
            elapsed = median_ms(lambda: store.search(USER, query), args.rounds)
            print(f"  search {query!r:12} {kind:28}    {elapsed:7.2f} ms  ({total} conversations match)")

        print("\nrecording a turn, median per call over 200 turns:")
        for name, milliseconds in recording_costs(store).items():
            print(f"  {name:15} {milliseconds:6.2f} ms")


if __name__ == "__main__":
    main()
