"""The tool-call benchmark's cases (benchmarks/data/tool_cases.json) through the parser: each
typical answer written by hand for a case is read as the call it names, or stays text. The
benchmark itself measures the model; this checks only what jisu makes of an answer."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from jisu.structured.plan import plan_output
from jisu.structured.tool_calls import ToolCallStream, split_tool_calls

SUITE = json.loads((Path(__file__).parents[2] / "benchmarks" / "data" / "tool_cases.json").read_text())
TOOLS, CASES = SUITE["tools"], SUITE["cases"]
OUTPUTS = [pytest.param(case, output, id=f"{case['id']}-{index}")
           for case in CASES for index, output in enumerate(case.get("outputs", []))]


def offered(case: dict) -> dict[str, dict]:
    return {name: TOOLS[name]["function"]["parameters"] for name in case["tools"]}


def streamed(text: str, functions: dict[str, dict]) -> tuple[str, list[dict]]:
    """What a streaming client gets: the content shown, and the calls at the end."""
    stream = ToolCallStream(functions)
    shown = "".join(stream.feed(text[i:i + 3]) for i in range(0, len(text), 3))
    rest, calls = stream.finish()
    return shown + rest, calls


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_every_case_is_a_request_jisu_accepts(case):
    tools = [TOOLS[name] for name in case["tools"]]
    for choice in ("auto", "required"):
        assert plan_output(None, tools, choice).grammar


@pytest.mark.parametrize("case,output", OUTPUTS)
def test_typical_answers_read_as_the_call_they_make_or_stay_text(case, output):
    functions, text = offered(case), output["text"]
    content, calls = split_tool_calls(text, functions)
    shown, streamed_calls = streamed(text, functions)
    if output["reads_as"] is None:
        assert (content, calls) == (text, []), "an answer that is not a well-formed call reaches the user as written"
        assert (shown, streamed_calls) == (text, [])
        return
    assert [call["function"]["name"] for call in calls] == [output["reads_as"]]
    arguments = json.loads(calls[0]["function"]["arguments"])
    jsonschema.validate(arguments, functions[output["reads_as"]])
    assert shown.strip() == (content or "").strip(), "text before a call is shown, the call itself never"
    assert [call["function"] for call in streamed_calls] == [call["function"] for call in calls]


def test_the_suite_covers_every_kind_of_answer():
    """Tagged, fenced and bare calls; JSON answers and calls the schema refuses; plain text."""
    outputs = [output for case in CASES for output in case.get("outputs", [])]
    calls = [output["text"] for output in outputs if output["reads_as"]]
    texts = [output["text"] for output in outputs if not output["reads_as"]]
    assert any("<tool_call>" in text for text in calls) and any(text.startswith("```json") for text in calls)
    assert any(text.startswith("{") for text in calls)
    assert any(text.startswith("{") for text in texts) and any(not text.startswith(("{", "```")) for text in texts)
