"""One chat request's output plan: the grammar, its trigger, the tools the template lists.

For `tool_choice: auto` the grammar is lazy: the model writes freely until it opens a
`<tool_call>`, and from there on must finish a well-formed call. When JSON is also required,
the answer is either calls or the JSON document, from its first token on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jisu.engine.grammar import GrammarBuilder, schema_grammar
from jisu.structured.response_format import read_response_format, schema_instruction
from jisu.structured.tool_calls import TOOL_CALL_OPEN
from jisu.structured.tools import (
    CALL_PROPERTY_ORDER,
    add_tool_calls_rule,
    read_tool_choice,
    read_tools,
)


@dataclass
class OutputPlan:
    """What a chat request asks of the output, decided before generation starts."""

    tools_for_template: list[dict[str, Any]] | None = None
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # offered: name -> parameters schema
    grammar: str | None = None
    lazy_trigger: str | None = None  # the grammar applies from this text on
    schema_instruction: str | None = None  # appended to the system prompt


def plan_output(response_format: dict[str, Any] | None, tools: list[dict[str, Any]] | None,
                tool_choice: str | dict[str, Any] | None) -> OutputPlan:
    """The plan for these request fields; InvalidRequest, naming the field, for what cannot be done."""
    json_schema, wants_json = read_response_format(response_format)
    functions = read_tools(tools)
    choice = read_tool_choice(tool_choice, functions)
    plan = OutputPlan()
    if json_schema is not None:
        plan.schema_instruction = schema_instruction(json_schema)
    answer_schema = json_schema if json_schema is not None else {"type": "object"}  # json_object: any object
    if choice == "none" or not functions:
        if wants_json:
            plan.grammar = schema_grammar(answer_schema)
        return plan

    plan.tools_for_template = tools
    allowed = functions if choice in ("auto", "required") else [f for f in functions if f["name"] == choice]
    plan.functions = {f["name"]: f["parameters"] for f in functions}
    builder = GrammarBuilder(property_order=CALL_PROPERTY_ORDER)
    calls = add_tool_calls_rule(builder, allowed)
    if choice == "auto" and wants_json:
        json_rule = builder.add_schema(answer_schema, "answer", "response_format")
        root = f"root ::= {calls} | {json_rule}"
    else:
        root = f"root ::= {calls}"
        if choice == "auto":
            plan.lazy_trigger = TOOL_CALL_OPEN
    plan.grammar = builder.build(root)
    return plan
