"""Reading the model's answer back: Qwen2.5's `<tool_call>` blocks into OpenAI tool calls.

With `tool_choice: auto` (and always on Ollama's API, which has no tool_choice) the model may
write its call without the tags: a whole answer that is one JSON object `{"name", "arguments"}`
naming an offered function, with arguments valid against that function's parameters, bare or
in a ```json fence, is read as that call too (small models, the 0.5B coder among them, do
this; Ollama reads such answers the same way). Anything less is an answer: a JSON document the
user asked for has other keys, and one that only resembles a call (an unknown function,
arguments the function would refuse) is shown as written rather than guessed into a call.

`functions` below maps each offered function's name to its parameters' JSON schema."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Mapping

import jsonschema

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


BARE_CALL = re.compile(r"\s*(?:```(?:json)?\s*)?(\{.*\})\s*(?:```)?\s*", re.DOTALL)
FENCE_OPENING = re.compile(r"```(?:json)?\s*")


def split_tool_calls(text: str, functions: Mapping[str, dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) from generated text. A call that does not parse, or names an
    unknown function, is never passed on: then the whole text is returned as content."""
    if TOOL_CALL_OPEN not in text:
        call = _bare_call(text, functions)
        return (None, [call]) if call else (text, [])
    calls = []
    for block in TOOL_CALL_BLOCK.findall(text):
        call = _read_call(block, functions)
        if call is None:
            return text, []
        calls.append(call)
    if not calls or text.count(TOOL_CALL_OPEN) != len(calls):
        return text, []  # an unfinished call (cut by max_tokens): show it as text
    content = text[: text.index(TOOL_CALL_OPEN)].strip()
    return content or None, calls


def _read_call(block: str, functions: Mapping[str, dict[str, Any]]) -> dict[str, Any] | None:
    """One call's JSON as an OpenAI tool call; None unless it names an offered function.
    (Inside `<tool_call>` tags the grammar has already held the arguments to the schema.)"""
    return _tool_call(_json_object(block), functions)


def _tool_call(call: dict[str, Any] | None, functions: Mapping[str, dict[str, Any]]) -> dict[str, Any] | None:
    if call is None or call.get("name") not in functions or not isinstance(call.get("arguments", {}), dict):
        return None
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}), ensure_ascii=False)},
    }


def _bare_call(text: str, functions: Mapping[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The call a whole answer makes without the tags: exactly {"name", "arguments"}, naming an
    offered function, with arguments its parameters' schema accepts (no grammar held them)."""
    match = BARE_CALL.fullmatch(text)
    document = _json_object(match.group(1)) if match and functions else None
    if document is None or set(document) != {"name", "arguments"} or document["name"] not in functions:
        return None
    schema = functions[document["name"]]
    if not jsonschema.validators.validator_for(schema)(schema).is_valid(document["arguments"]):
        return None
    return _tool_call(document, functions)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _may_become_bare_call(text: str) -> bool:
    """Whether an answer that starts like this may still turn out to be one untagged call."""
    body = text.lstrip()
    if body.startswith("{") or "```json".startswith(body):
        return True
    fence = FENCE_OPENING.match(body)
    return bool(fence) and (fence.end() == len(body) or body[fence.end()] == "{")


class ToolCallStream:
    """Streams content until a `<tool_call>` starts, then holds the rest for parsing. An
    answer that starts like an untagged call ("{", "```json") is held until it is clearly
    not one, or to its end."""

    def __init__(self, functions: Mapping[str, dict[str, Any]]) -> None:
        self.functions = functions
        self._text = ""
        self._shown = 0
        self._maybe_bare = True  # nothing shown yet, and what came may be an untagged call

    def feed(self, piece: str) -> str:
        self._text += piece
        if self._maybe_bare:
            self._maybe_bare = _may_become_bare_call(self._text)
            if self._maybe_bare:
                return ""
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
        _, calls = split_tool_calls(self._text, self.functions)
        if calls:
            return "", calls
        rest = self._text[self._shown:]
        self._shown = len(self._text)
        return rest, []
