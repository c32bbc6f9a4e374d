"""`jisu ask -x`: only the first fenced code block of the answer, without its fences.

The block is written line by line as the answer streams: a line is known to be code once its
newline has arrived and the block has not closed, so `jisu ask -x ... > out.ts` grows while the
model writes and the terminal shows progress on a long conversion. Nothing is written before
the block opens: the prose around it is dropped. Fences follow CommonMark (``` or ~~~, three
or more, indented at most three spaces; the closing fence as long or longer, alone on its line).
"""

from __future__ import annotations

import enum
import re
from typing import Callable

_OPENING_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")


class Outcome(enum.Enum):
    BLOCK = "block"  # a whole block was written
    UNCLOSED = "unclosed"  # the answer ended inside the block: written up to its end
    NO_BLOCK = "no block"  # no fence at all: the whole answer was written


class FirstCodeBlock:
    """Feed it the answer's text pieces; it writes the first code block's lines."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._answer: list[str] = []
        self._line = ""  # the current line until its newline arrives
        self._fence: str | None = None  # the opening fence while inside the block
        self._indent = 0
        self._state = "before"  # "before" the block, "inside" it, "after" it

    def feed(self, text: str) -> None:
        self._answer.append(text)
        if self._state == "after":
            return
        *complete, self._line = (self._line + text).split("\n")
        for line in complete:
            self._read_line(line)

    def finish(self) -> Outcome:
        """The answer has ended: write the last line of an open block, or the whole answer
        when it had no block."""
        if self._line and self._state != "after":
            self._read_line(self._line)
            self._line = ""
        if self._state == "before":
            answer = "".join(self._answer)
            self._write(answer if answer.endswith("\n") else answer + "\n")
            return Outcome.NO_BLOCK
        return Outcome.BLOCK if self._state == "after" else Outcome.UNCLOSED

    def _read_line(self, line: str) -> None:
        line = line.removesuffix("\r")
        if self._state == "before":
            opening = _OPENING_FENCE.match(line)
            # A backtick fence's info string may not hold a backtick (CommonMark): "```a```"
            # is inline code, not a block.
            if opening and not (opening.group(2)[0] == "`" and "`" in opening.group(3)):
                self._indent, self._fence = len(opening.group(1)), opening.group(2)
                self._state = "inside"
        elif self._state == "inside":
            if self._closes(line):
                self._state = "after"
            else:
                self._write(_dedent(line, self._indent) + "\n")

    def _closes(self, line: str) -> bool:
        assert self._fence is not None
        stripped = line.strip()
        return (len(line) - len(line.lstrip(" ")) <= 3 and len(stripped) >= len(self._fence)
                and set(stripped) == {self._fence[0]})


def _dedent(line: str, indent: int) -> str:
    """Content lines lose as many leading spaces as the opening fence had (CommonMark)."""
    spaces = len(line) - len(line.lstrip(" "))
    return line[min(spaces, indent):]
