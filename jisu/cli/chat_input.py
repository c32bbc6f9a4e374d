"""What the user sends in `jisu chat`: a line, a pasted block, or the lines between two \"\"\".

With a terminal, prompt_toolkit reads: line editing, history, wide (Chinese) characters, and
bracketed paste (it turns the mode on with ESC[?2004h and inserts everything up to ESC[201~ as
typed text, newlines included), so a pasted block is one message, sent with Enter. With a pipe,
each line is one message. Either way \"\"\" on its own (or before text) opens a multi-line
message, closed by a line ending in \"\"\".
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Iterator, TextIO

import click

from jisu.config import jisu_home

PROMPT = "你 > "
CONTINUATION = "... "
MULTILINE_MARK = '"""'

# read_line(prompt) -> one line (or a pasted block); EOFError when input ends, and
# KeyboardInterrupt when Ctrl-C is pressed at the prompt.
LineReader = Callable[[str], str]


@dataclass(frozen=True)
class Entry:
    text: str
    multiline: bool  # a pasted block or a \"\"\" message: always a message, never a /command


def entries(read_line: LineReader) -> Iterator[Entry]:
    """What the user sends, one entry at a time, until input ends."""
    while True:
        try:
            line = read_line(PROMPT)
        except EOFError:
            return
        except KeyboardInterrupt:
            click.echo("(Ctrl-D or /exit leaves the chat)", err=True)
            continue
        if not line.lstrip().startswith(MULTILINE_MARK):
            yield Entry(line, multiline="\n" in line)
            continue
        try:
            yield Entry(_multiline_message(line, read_line), multiline=True)
        except KeyboardInterrupt:
            click.echo("(multi-line message dropped)", err=True)


def _multiline_message(first: str, read_line: LineReader) -> str:
    """The text between the opening \"\"\" (on `first`) and the next line ending in \"\"\"; an
    input that ends first still sends what was written."""
    opened = first.lstrip()[len(MULTILINE_MARK):]
    if opened.rstrip().endswith(MULTILINE_MARK):  # """all on one line"""
        return opened.rstrip()[: -len(MULTILINE_MARK)]
    lines = [opened] if opened.strip() else []
    while True:
        try:
            line = read_line(CONTINUATION)
        except EOFError:
            break
        if line.rstrip().endswith(MULTILINE_MARK):
            last = line.rstrip()[: -len(MULTILINE_MARK)]
            if last.strip():
                lines.append(last)
            break
        lines.append(line)
    return "\n".join(lines)


def terminal_reader(**session_options) -> LineReader:
    """Lines from the terminal through prompt_toolkit, with a history kept under JISU_HOME
    (tests pass prompt_toolkit's `input` and `output` in session_options)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    history = jisu_home() / "chat_history"
    history.parent.mkdir(parents=True, exist_ok=True)
    session = PromptSession(history=FileHistory(str(history)), **session_options)
    return session.prompt


def pipe_reader(stream: TextIO | None = None) -> LineReader:
    """Lines from a pipe or file; the prompt is not shown (stdout carries only the answers)."""
    source = stream or sys.stdin

    def read_line(_prompt: str) -> str:
        line = source.readline()
        if not line:
            raise EOFError
        return line.removesuffix("\n").removesuffix("\r")

    return read_line
