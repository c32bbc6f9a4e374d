"""Reading the model's answer back: Qwen2.5's `<tool_call>` blocks into OpenAI tool calls."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def split_tool_calls(text: str, function_names: list[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) from generated text. A call that does not parse, or names an
    unknown function, is never passed on: then the whole text is returned as content."""
    if TOOL_CALL_OPEN not in text:
        return text, []
    calls = []
    for block in TOOL_CALL_BLOCK.findall(text):
        try:
            call = json.loads(block)
        except json.JSONDecodeError:
            return text, []
        if not isinstance(call, dict) or call.get("name") not in function_names \
                or not isinstance(call.get("arguments", {}), dict):
            return text, []
        calls.append({
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"],
                         "arguments": json.dumps(call.get("arguments", {}), ensure_ascii=False)},
        })
    if not calls or text.count(TOOL_CALL_OPEN) != len(calls):
        return text, []  # an unfinished call (cut by max_tokens): show it as text
    content = text[: text.index(TOOL_CALL_OPEN)].strip()
    return content or None, calls


class ToolCallStream:
    """Streams content until a `<tool_call>` starts, then holds the rest for parsing."""

    def __init__(self, function_names: list[str]) -> None:
        self.function_names = function_names
        self._text = ""
        self._shown = 0

    def feed(self, piece: str) -> str:
        self._text += piece
        if TOOL_CALL_OPEN in self._text:
            visible_end = self._text.index(TOOL_CALL_OPEN)
        else:  # hold back a possible start of "<tool_call>"
            visible_end = len(self._text)
            for keep in range(min(len(TOOL_CALL_OPEN) - 1, len(self._text)), 0, -1):
                if self._text.endswith(TOOL_CALL_OPEN[:keep]):
                    visible_end -= keep
                    break
        if visible_end <= self._shown:
            return ""
        out = self._text[self._shown:visible_end]
        self._shown = visible_end
        return out

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """The content not yet shown, and the parsed calls."""
        _, calls = split_tool_calls(self._text, self.function_names)
        if calls:
            return "", calls
        rest = self._text[self._shown:]
        self._shown = len(self._text)
        return rest, []
