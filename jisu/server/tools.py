"""Structured output and tool calling for chat completions.

Both work by constrained decoding: the request is turned into a grammar (JSON, JSON valid
against a schema, or Qwen2.5's `<tool_call>` blocks whose arguments follow each function's
parameter schema), so what comes back parses by construction. For `tool_choice: auto` the
grammar is lazy: the model writes freely until it opens a `<tool_call>`, and from there on
must finish a well-formed call.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from jisu.engine.grammar import GrammarBuilder, check_schema, schema_grammar
from jisu.types import ChatMessage, InvalidRequest

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass
class OutputPlan:
    """What a chat request asks of the output, decided before generation starts."""

    tools_for_template: list[dict[str, Any]] | None = None
    function_names: list[str] = field(default_factory=list)
    grammar: str | None = None
    lazy_trigger: str | None = None  # the grammar applies from this text on
    schema_instruction: str | None = None  # appended to the system prompt


def plan_output(response_format: dict[str, Any] | None, tools: list[dict[str, Any]] | None,
                tool_choice: str | dict[str, Any] | None) -> OutputPlan:
    json_schema, wants_json = _read_response_format(response_format)
    functions = _read_tools(tools)
    choice = _read_tool_choice(tool_choice, functions)
    plan = OutputPlan()
    if json_schema is not None:
        plan.schema_instruction = ("Respond only with a JSON object that follows this JSON schema:\n"
                                   + json.dumps(json_schema, ensure_ascii=False))
    if choice == "none" or not functions:
        if wants_json:
            plan.grammar = schema_grammar(json_schema if json_schema is not None else {"type": "object"})
        return plan

    plan.tools_for_template = tools
    allowed = functions if choice in ("auto", "required") else [f for f in functions if f["name"] == choice]
    plan.function_names = [f["name"] for f in functions]
    builder = GrammarBuilder(property_order=("name", "arguments"))
    call_rule = builder.add_schema({"oneOf": [_call_schema(f) for f in allowed]}, "call", "tools")
    calls = (f'"{TOOL_CALL_OPEN}\\n" {call_rule} "\\n{TOOL_CALL_CLOSE}" '
             f'("\\n{TOOL_CALL_OPEN}\\n" {call_rule} "\\n{TOOL_CALL_CLOSE}")*')
    if choice == "auto" and wants_json:
        json_rule = builder.add_schema(json_schema if json_schema is not None else {"type": "object"},
                                       "answer", "response_format")
        root = f"root ::= {calls} | {json_rule}"
    else:
        root = f"root ::= {calls}"
        if choice == "auto":
            plan.lazy_trigger = TOOL_CALL_OPEN
    plan.grammar = builder.build(root)
    return plan


def with_schema_instruction(messages: list[ChatMessage], instruction: str | None) -> list[ChatMessage]:
    """Tell the model the schema it must follow; a 0.5B model fills fields far better when it
    can read their names and types, and the grammar alone only guarantees the shape."""
    if not instruction:
        return messages
    if messages and messages[0].role == "system":
        first = messages[0]
        return [ChatMessage("system", f"{first.content}\n\n{instruction}")] + messages[1:]
    from jisu.engine.template import DEFAULT_SYSTEM_PROMPT

    return [ChatMessage("system", f"{DEFAULT_SYSTEM_PROMPT}\n\n{instruction}")] + messages


# ---- reading the model's answer back --------------------------------------------------


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
        content, calls = split_tool_calls(self._text, self.function_names)
        if calls:
            return "", calls
        rest = self._text[self._shown:]
        self._shown = len(self._text)
        return rest, []


# ---- validating the request -----------------------------------------------------------


def _read_response_format(response_format: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """(schema or None, whether JSON is required)."""
    if not response_format:
        return None, False
    kind = response_format.get("type")
    if kind == "text":
        return None, False
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise InvalidRequest("response_format.json_schema.schema must be a JSON schema object",
                                 "response_format.json_schema.schema")
        schema_grammar(spec["schema"])  # refuse what cannot be enforced, before generating
        return spec["schema"], True
    raise InvalidRequest(f"response_format.type must be text, json_object or json_schema, got {kind!r}",
                         "response_format.type")


def _read_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    functions = []
    for index, tool in enumerate(tools or []):
        param = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" \
                or not isinstance(tool.get("function"), dict):
            raise InvalidRequest("each tool must be {\"type\": \"function\", \"function\": {...}}", param)
        function = tool["function"]
        name = function.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            raise InvalidRequest("function.name must be 1-64 letters, digits, _ . or -", f"{param}.function.name")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        check_schema(parameters, f"{param}.function.parameters")
        functions.append({"name": name, "parameters": parameters})
    if len({f["name"] for f in functions}) != len(functions):
        raise InvalidRequest("tool function names must be unique", "tools")
    return functions


def _read_tool_choice(tool_choice, functions) -> str:
    if tool_choice is None:
        return "auto" if functions else "none"
    if tool_choice in ("none", "auto", "required"):
        if tool_choice == "required" and not functions:
            raise InvalidRequest("tool_choice 'required' needs tools", "tool_choice")
        return tool_choice
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        if name in {f["name"] for f in functions}:
            return name
        raise InvalidRequest(f"tool_choice names function {name!r}, which is not in tools", "tool_choice")
    raise InvalidRequest("tool_choice must be none, auto, required or {\"type\": \"function\", ...}", "tool_choice")


def _call_schema(function: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object",
            "properties": {"name": {"const": function["name"]}, "arguments": function["parameters"]},
            "required": ["name", "arguments"], "additionalProperties": False}
