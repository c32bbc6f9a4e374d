"""One chat request's output plan: the grammar, its trigger, the tools the template lists.

For `tool_choice: auto` the grammar is lazy: the model writes freely until it opens a call,
with a `<tool_call>` tag or as an answer that starts as an untagged call's JSON, and from there
on must finish well-formed calls whose arguments fit the schema. When JSON is also required,
the answer is either calls or the JSON document, from its first token on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jisu.engine.grammar import GrammarBuilder, schema_grammar
from jisu.structured.response_format import read_response_format, schema_instruction
from jisu.structured.tools import (
    CALL_PROPERTY_ORDER,
    TOOL_RESULT_NOTE,
    add_call_rule,
    call_trigger,
    read_tool_choice,
    read_tools,
    tagged_calls,
)


@dataclass
class OutputPlan:
    """What a chat request asks of the output, decided before generation starts."""

    tools_for_template: list[dict[str, Any]] | None = None
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # offered: name -> parameters schema
    grammar: str | None = None
    lazy_trigger: str | None = None  # the grammar applies once this pattern matches (tools.call_trigger)
    schema_instruction: str | None = None  # appended to the system prompt
    tool_result_note: str | None = None  # follows a conversation that ends with tool results


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
    if not wants_json and choice in ("auto", "none"):  # the answer may be text, not a call
        plan.tool_result_note = TOOL_RESULT_NOTE
    if choice == "none" or not functions:
        if wants_json:
            plan.grammar = schema_grammar(answer_schema)
        return plan

    plan.tools_for_template = tools
    allowed = functions if choice in ("auto", "required") else [f for f in functions if f["name"] == choice]
    plan.functions = {f["name"]: f["parameters"] for f in functions}
    builder = GrammarBuilder(property_order=CALL_PROPERTY_ORDER)
    call = add_call_rule(builder, allowed)
    calls = tagged_calls(call)
    if choice == "auto" and wants_json:
        json_rule = builder.add_schema(answer_schema, "answer", "response_format")
        root = f"root ::= {calls} | {json_rule}"
    elif choice == "auto":
        # From the trigger on: tagged calls, or the one untagged call, closing its fence if any.
        root = f'root ::= {calls} | {call} ([ \\n]* "```")?'
        plan.lazy_trigger = call_trigger(allowed)
    else:
        root = f"root ::= {calls}"
    plan.grammar = builder.build(root)
    return plan
