"""OpenAI's `tools` and `tool_choice`, checked; the grammar of the calls the model may write; the
note that follows tool results."""

from __future__ import annotations

import re
from typing import Any

from jisu.engine.grammar import GrammarBuilder, check_schema
from jisu.structured.tool_calls import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from jisu.types import ChatMessage, InvalidRequest

FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
CALL_PROPERTY_ORDER = ("name", "arguments")  # as Qwen writes a call; a GrammarBuilder option
# After tool results, the 0.5B models tend to call the same function again (or echo the call as
# text) rather than answer; this note, read last, makes them answer far more often (7 of 11 such
# cases in benchmarks/bench_tools.py, against 0; the same advice in the system prompt did nothing).
TOOL_RESULT_NOTE = ("The function results are above. Answer the user with them, in plain language. "
                    "Do not call the same function again.")


def read_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The functions offered, as {"name", "parameters"}; InvalidRequest naming the bad field."""
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


def read_tool_choice(tool_choice: str | dict[str, Any] | None, functions: list[dict[str, Any]]) -> str:
    """"none", "auto", "required", or the name of the one function the model must call."""
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


def add_call_rule(builder: GrammarBuilder, functions: list[dict[str, Any]]) -> str:
    """The GBNF rule of one call's JSON, `{"name", "arguments"}`, calling one of `functions` with
    arguments valid against its parameters; `builder` orders properties by CALL_PROPERTY_ORDER."""
    return builder.add_schema({"oneOf": [_call_schema(f) for f in functions]}, "call", "tools")


def tagged_calls(call_rule: str) -> str:
    """A GBNF expression for one or more calls, each in Qwen's `<tool_call>` tags."""
    return (f'"{TOOL_CALL_OPEN}\\n" {call_rule} "\\n{TOOL_CALL_CLOSE}" '
            f'("\\n{TOOL_CALL_OPEN}\\n" {call_rule} "\\n{TOOL_CALL_CLOSE}")*')


def call_trigger(functions: list[dict[str, Any]]) -> str:
    """The pattern (ECMAScript, searched in the answer so far, as llama.cpp's lazy grammars do)
    of the moment an answer has become a call: a `<tool_call>` tag anywhere, or an answer that
    opens, bare or in a json fence, as `{"name": "<an offered function>", "arguments"` (small
    models often call so). A JSON answer the user asked for starts that way only if it is such
    a call itself. The grammar takes over from the first capture group.

    llama.cpp replays the text from there into the grammar, and aborts the process if the
    grammar refuses it: so the untagged opening allows exactly the grammar's spacing (compact,
    no newlines) and must end the text so far (`$`); an answer that never fits is read after
    the fact (tool_calls.py). Whitespace runs are bounded to keep std::regex's recursion short."""
    names = "|".join(re.escape(f["name"]) for f in functions)
    untagged = rf'^\s{{0,8}}(?:```(?:json)?\s{{0,8}})?(\{{ ?"name" ?: ?"(?:{names})", ?"arguments(?:" ?:?)?)$'
    return f"({re.escape(TOOL_CALL_OPEN)})|{untagged}"


def _call_schema(function: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object",
            "properties": {"name": {"const": function["name"]}, "arguments": function["parameters"]},
            "required": ["name", "arguments"], "additionalProperties": False}


def with_tool_result_note(messages: list[ChatMessage], note: str | None) -> list[ChatMessage]:
    """The conversation with `note` as a system turn after it, when it ends with tool results."""
    if not note or not messages or messages[-1].role != "tool":
        return messages
    return [*messages, ChatMessage("system", note)]
