"""`jisu ask -x`: the first fenced code block of an answer, without its fences, written line by
line as the answer streams; the whole answer (and a warning) when there is no block."""

from __future__ import annotations

import pytest

from cli_runner import RecordingEngine, fake_jisu_serve, nothing_at_the_default_address, run_jisu
from jisu.cli.extract import FirstCodeBlock, Outcome

pytestmark = pytest.mark.usefixtures(nothing_at_the_default_address.__name__)


def extract(answer: str, piece_size: int | None = None) -> tuple[str, Outcome]:
    """What -x writes for `answer`, fed whole or in pieces of `piece_size` characters."""
    written: list[str] = []
    block = FirstCodeBlock(written.append)
    size = piece_size or len(answer) or 1
    for start in range(0, len(answer), size):
        block.feed(answer[start:start + size])
    outcome = block.finish()
    return "".join(written), outcome


TS = "function add(a: number, b: number): number {\n  return a + b;\n}\n"

SHAPES = [
    # (answer, what -x writes, outcome)
    (f"Here is the TypeScript:\n\n```typescript\n{TS}```\n\nIt adds two numbers.", TS, Outcome.BLOCK),
    (f"```ts\n{TS}```", TS, Outcome.BLOCK),  # the answer is only the block, no newline at its end
    (f"```\n{TS}```\n", TS, Outcome.BLOCK),  # no language
    ("下面是代码：\n```python\n# 计算两数之和\ndef 加(a, b):\n    return a + b  # 返回和\n```\n说明：函数返回和。",
     "# 计算两数之和\ndef 加(a, b):\n    return a + b  # 返回和\n", Outcome.BLOCK),
    ("First:\n```js\nlet a = 1;\n```\nThen:\n```js\nlet b = 2;\n```\n", "let a = 1;\n", Outcome.BLOCK),
    ("````markdown\nUse a fence:\n```js\nx();\n```\n````\n", "Use a fence:\n```js\nx();\n```\n", Outcome.BLOCK),
    ("~~~rust\nfn main() {}\n~~~\n", "fn main() {}\n", Outcome.BLOCK),
    ("Steps:\n  ```sh\n  ls -l\n    indented more\n  ```\n", "ls -l\n  indented more\n", Outcome.BLOCK),
    ("```js\r\nlet a = 1;\r\n```\r\n", "let a = 1;\n", Outcome.BLOCK),
    ("```go\nfunc main() {\n", "func main() {\n", Outcome.UNCLOSED),  # cut off by max_tokens
    ("```go\npackage main", "package main\n", Outcome.UNCLOSED),
    ("The answer is 42.", "The answer is 42.\n", Outcome.NO_BLOCK),
    ("用 `print()` 输出，例如 ```print(1)``` 就可以。\n", "用 `print()` 输出，例如 ```print(1)``` 就可以。\n",
     Outcome.NO_BLOCK),  # inline code, not a fenced block
    ("", "\n", Outcome.NO_BLOCK),
]


@pytest.mark.parametrize("answer,expected,outcome", SHAPES, ids=range(len(SHAPES)))
@pytest.mark.parametrize("piece_size", [None, 1, 3], ids=["whole", "by-character", "by-3"])
def test_the_first_block_whatever_the_shape_and_however_it_streams(answer, expected, outcome, piece_size):
    assert extract(answer, piece_size) == (expected, outcome)


def test_block_lines_are_written_as_soon_as_they_are_complete():
    written: list[str] = []
    block = FirstCodeBlock(written.append)
    block.feed("Sure! Here it is:\n```ts\nconst a")
    assert written == [], "nothing before the block's first line is complete"
    block.feed(" = 1;\nconst b")
    assert written == ["const a = 1;\n"]
    block.feed(" = 2;\n```\nAnd some prose after it.\n```\nnot this\n```\n")
    assert written == ["const a = 1;\n", "const b = 2;\n"]
    assert block.finish() is Outcome.BLOCK


# ---- through the command ---------------------------------------------------------------------


@pytest.fixture
def jisu(monkeypatch, capsys):
    return lambda *args, stdin="": run_jisu(monkeypatch, capsys, *args, stdin=stdin)


def test_ask_x_writes_pure_code(jisu):
    engine = RecordingEngine(answer=lambda prompt: f"Here you go:\n\n```typescript\n{TS}```\n\nDone.")
    with fake_jisu_serve(engine) as (url, _):
        result = jisu("ask", "-x", "Convert to TypeScript", "--url", url, stdin="function add(a, b) { return a + b }\n")
    assert (result.code, result.out, result.err) == (0, TS, "")


def test_ask_x_without_a_block_prints_the_answer_and_warns(jisu):
    engine = RecordingEngine(answer=lambda prompt: "我不能转换这段代码。")
    with fake_jisu_serve(engine) as (url, _):
        result = jisu("ask", "-x", "Convert", "--url", url)
    assert result.code == 0
    assert result.out == "我不能转换这段代码。\n"
    assert result.error_line() == "jisu: the answer has no fenced code block; printed it whole"


def test_ask_x_on_an_answer_cut_inside_its_block_warns(jisu):
    engine = RecordingEngine(answer=lambda prompt: "```py\nprint('a')\nprint('b')\n```\n")
    with fake_jisu_serve(engine) as (url, _):
        result = jisu("ask", "-x", "code", "--url", url, "--max-tokens", "16")
    assert result.out == "print('a')\n"
    assert "ended inside its code block" in result.err
