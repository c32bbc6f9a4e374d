"""Where the web page puts an attached file in a message: before the typed question or after it.

A few small files (JavaScript, CSV, Markdown, JSON, Python), each with a question that has one
checkable answer, sent both ways in the page's own format (jisu/web/attachments.js: "File: NAME"
and the text in a fence with the language's tag), greedy, with the page's default system prompt,
against a real `jisu serve`. A case scores when its check passes; the checks are crude (a city's
name, a number, type annotations in a TypeScript conversion) and the answers are printed, so a
reader can judge them too.

    .venv/bin/python benchmarks/bench_attachment_order.py [--model PATH] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import re

import httpx

from servers import jisu_server
from standin import standin_path

SYSTEM = "你是一个乐于助人的中文助手。回答准确、简洁、有条理；不确定时请直说不知道，不要编造。"

JS = """import { readFile } from "node:fs/promises";

export async function loadUsers(path) {
  const text = await readFile(path, "utf8");
  return JSON.parse(text).map((user) => ({ id: user.id, name: user.name.trim(), age: Number(user.age) }));
}

export function adults(users, minAge = 18) {
  return users.filter((user) => user.age >= minAge);
}

export function byName(a, b) {
  return a.name.localeCompare(b.name);
}

export function summary(users) {
  const total = users.reduce((sum, user) => sum + user.age, 0);
  return { count: users.length, averageAge: users.length ? total / users.length : 0 };
}
"""
CSV = """city,country,population_millions
Lyon,France,0.52
Osaka,Japan,2.75
Chengdu,China,20.9
Porto,Portugal,0.23
Denver,USA,0.71
Hanoi,Vietnam,8.05
"""
MARKDOWN = """# Release notes 2.4

## Changes
- The cache now keeps conversations for 30 minutes instead of 10.
- `jisu serve --parallel` defaults to 4.
- Dropped support for Python 3.9.

## Fixes
- A crash when the prompt was empty.

```sh
pip install -U jisu
```
"""
CONFIG = json.dumps({"server": {"host": "0.0.0.0", "port": 8443, "workers": 3},
                     "database": {"url": "postgres://db:5432/app", "pool": 10},
                     "features": {"search": True, "export": False}}, indent=2)
PYTHON = """def average(values):
    total = 0
    for value in values:
        total += value
    return total / len(values) - 1
"""

# (file name, fence language, text, question, check of the answer)
CASES = [
    ("users.js", "javascript", JS, "把这个文件转成 TypeScript，给每个函数的参数和返回值加上类型，只输出代码。",
     lambda answer: bool(re.search(r"\(\w+: \w+", answer))),
    ("cities.csv", "csv", CSV, "哪个城市人口最多？只回答城市名。", lambda answer: "Chengdu" in answer or "成都" in answer),
    ("cities.csv", "csv", CSV, "Which city is in Vietnam? Answer with the city name only.",
     lambda answer: "Hanoi" in answer and len(answer) < 40),
    ("release.md", "markdown", MARKDOWN, "新版本的缓存保留对话多久？只回答时间。", lambda answer: "30" in answer and len(answer) < 40),
    ("release.md", "markdown", MARKDOWN, "Which Python version is no longer supported? Answer in a few words.",
     lambda answer: "3.9" in answer and len(answer) < 80),
    ("config.json", "json", CONFIG, "服务器用哪个端口？只回答数字。", lambda answer: "8443" in answer and len(answer) < 20),
    ("config.json", "json", CONFIG, "Is the export feature on? Answer yes or no.",
     lambda answer: answer.strip().lower().startswith("no")),
    ("stats.py", "python", PYTHON, "这个函数有一个 bug，是哪一行？用一句话说明。",
     lambda answer: "- 1" in answer or "-1" in answer or "减" in answer),
]


def file_block(name: str, lang: str, text: str) -> str:
    """As jisu/web/attachments.js formatAttachment writes it (no backticks in these files)."""
    return f"File: {name}\n```{lang}\n{text.rstrip()}\n```"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="alias or GGUF path (default: the stand-in)")
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    scores = {"file first": 0, "question first": 0}
    with jisu_server(standin_path(options.model), options.threads, 1, 4096) as (url, _):
        for name, lang, text, question, check in CASES:
            block = file_block(name, lang, text)
            orders = {"file first": f"{block}\n\n{question}", "question first": f"{question}\n\n{block}"}
            for order, content in orders.items():
                response = httpx.post(f"{url}/v1/chat/completions", timeout=300, json={
                    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}],
                    "temperature": 0, "max_tokens": 160})
                answer = response.json()["choices"][0]["message"]["content"]
                passed = check(answer)
                scores[order] += passed
                print(f"--- {name} | {question} | {order}: {'ok' if passed else 'MISS'}\n{answer[:400]}\n", flush=True)
    print(" · ".join(f"{order}: {score}/{len(CASES)}" for order, score in scores.items()))


if __name__ == "__main__":
    main()
