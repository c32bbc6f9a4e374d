"""jisu.structured on its own and through the API: request checks, grammars, parsing the answer back."""

from __future__ import annotations

import json
import re


import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, FakeEngine, fake_runtime
from streams import DONE, sse_events
from jisu.engine.grammar import schema_grammar
from jisu.engine.template import DEFAULT_SYSTEM_PROMPT
from jisu.server.app import create_app
from jisu.structured.plan import plan_output
from jisu.structured.response_format import with_schema_instruction
from jisu.structured.tool_calls import ToolCallStream, split_tool_calls
from jisu.structured.tools import TOOL_RESULT_NOTE, with_tool_result_note
from jisu.types import ChatMessage, InvalidRequest

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time"}}
FUNCTIONS = {"get_weather": WEATHER["function"]["parameters"]}  # what the parser is given: name -> schema
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_json_object_mode_gets_a_grammar_rooted_at_an_object():
    plan = plan_output({"type": "json_object"}, None, None)
    assert "root ::= object" in plan.grammar and plan.lazy_trigger is None


def test_json_schema_mode_tells_the_model_the_schema():
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    plan = plan_output({"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}, None, None)
    assert '"\\"age\\""' in plan.grammar
    assert '"age"' in plan.schema_instruction


def test_the_schema_instruction_follows_the_given_system_prompt():
    messages = [ChatMessage("system", "Be terse."), ChatMessage("user", "hi")]
    assert with_schema_instruction(messages, "Use the schema.") == [
        ChatMessage("system", "Be terse.\n\nUse the schema."), ChatMessage("user", "hi")]


def test_the_schema_instruction_keeps_the_default_system_prompt_when_none_is_given():
    # Qwen's template adds its default system prompt only when there is no system message;
    # adding one for the instruction must not lose it.
    assert with_schema_instruction([ChatMessage("user", "hi")], "Use the schema.") == [
        ChatMessage("system", f"{DEFAULT_SYSTEM_PROMPT}\n\nUse the schema."), ChatMessage("user", "hi")]


def test_without_a_schema_the_messages_are_left_alone():
    messages = [ChatMessage("user", "hi")]
    assert with_schema_instruction(messages, None) is messages


def test_grammar_strings_never_admit_raw_control_characters():
    grammar = schema_grammar({"type": "object", "properties": {"s": {"type": "string"}}})
    char_rule = next(line for line in grammar.splitlines() if line.startswith("char ::="))
    assert "\\x00-\\x1F" in char_rule, "a raw newline inside a JSON string is invalid JSON"


@pytest.mark.parametrize(
    "response_format,param",
    [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema.schema"),
        ({"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}},
         "response_format.json_schema.schema"),
        ({"type": "json_schema", "json_schema": {"schema": {"type": "object", "minProperties": "x"}}},
         "response_format.json_schema.schema"),
    ],
)
def test_invalid_response_formats_are_refused_naming_the_field(response_format, param):
    with pytest.raises(InvalidRequest) as error:
        plan_output(response_format, None, None)
    assert error.value.param == param


def test_tools_auto_uses_a_lazy_grammar_triggered_by_tool_call():
    plan = plan_output(None, [WEATHER], "auto")
    assert re.search(plan.lazy_trigger, "Let me check. <tool_call>").group(1) == "<tool_call>"
    assert plan.tools_for_template == [WEATHER] and plan.functions == FUNCTIONS
    assert '"\\"get_weather\\""' in plan.grammar


# llama.cpp reads the trigger as an ECMAScript regex; Python's re means the same for these constructs.
@pytest.mark.parametrize("so_far", [
    '{"name": "get_weather", "arguments',
    '{"name":"get_weather","arguments":',
    '```json\n{"name": "get_weather", "arguments"',
])
def test_an_answer_opening_as_an_untagged_call_triggers_the_call_grammar(so_far):
    """Small models write their call without the tags; from its opening on, the grammar holds
    the call to its schema (and ends the answer with it), from the `{` the trigger captures."""
    plan = plan_output(None, [WEATHER], "auto")
    match = re.search(plan.lazy_trigger, so_far)
    assert match and so_far[so_far.index("{"):] == next(group for group in match.groups() if group)
    root = next(line for line in plan.grammar.splitlines() if line.startswith("root ::="))
    assert "| call " in root, "from the trigger on: tagged calls, or one untagged call"


@pytest.mark.parametrize("so_far", [
    '{"name": "Alice", "arguments"',  # a JSON answer that is no call to an offered function
    '{"name": "get_weather", "description"',  # naming the function, yet no call
    'Call it so: {"name": "get_weather", "arguments"',  # not the answer's opening
    '{\n  "name": "get_weather",\n  "arguments"',  # spacing the grammar would refuse: read afterwards
    '{"name": "get_weather", "arguments": {"',  # the text so far has gone past the trigger
])
def test_other_openings_leave_the_answer_free(so_far):
    assert re.search(plan_output(None, [WEATHER], "auto").lazy_trigger, so_far) is None


def test_a_conversation_ending_with_tool_results_gets_the_note_when_the_answer_may_be_text():
    result = [ChatMessage("user", "weather?"), ChatMessage("assistant", "", tool_calls=[
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]),
        ChatMessage("tool", '{"temp_c": 21}', tool_call_id="c1")]
    for choice in ("auto", "none"):
        note = plan_output(None, [WEATHER], choice).tool_result_note
        assert with_tool_result_note(result, note) == [*result, ChatMessage("system", TOOL_RESULT_NOTE)]
    assert with_tool_result_note(result[:1], TOOL_RESULT_NOTE) == result[:1], "only after tool results"
    assert plan_output(None, [WEATHER], "required").tool_result_note is None, "a call must follow"
    assert plan_output({"type": "json_object"}, [WEATHER], "auto").tool_result_note is None, "JSON must follow"


def test_tools_required_and_named_are_not_lazy():
    required = plan_output(None, [WEATHER, CLOCK], "required")
    assert required.lazy_trigger is None
    assert '"\\"get_weather\\""' in required.grammar and '"\\"get_time\\""' in required.grammar
    named = plan_output(None, [WEATHER, CLOCK], {"type": "function", "function": {"name": "get_time"}})
    assert named.lazy_trigger is None
    assert '"\\"get_time\\""' in named.grammar
    assert "get_weather" not in named.grammar, "a named tool_choice allows only that function"


def test_tools_auto_with_json_required_is_calls_or_json_from_the_first_token():
    plan = plan_output({"type": "json_object"}, [WEATHER], "auto")
    assert plan.lazy_trigger is None, "a lazy grammar would leave a plain answer unconstrained"
    root = next(line for line in plan.grammar.splitlines() if line.startswith("root ::="))
    assert "<tool_call>" in root and "| answer" in root


def test_tool_choice_none_renders_no_tools():
    plan = plan_output(None, [WEATHER], "none")
    assert plan.tools_for_template is None and plan.grammar is None


@pytest.mark.parametrize(
    "tools,choice,param",
    [
        ([{"type": "function", "function": {"name": "bad name!"}}], None, "tools[0].function.name"),
        ([{"type": "retrieval"}], None, "tools[0]"),
        ([WEATHER, WEATHER], None, "tools"),
        ([WEATHER], {"type": "function", "function": {"name": "other"}}, "tool_choice"),
        (None, "required", "tool_choice"),
        ([WEATHER], "sometimes", "tool_choice"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}], None,
         "tools[0].function.parameters"),
    ],
)
def test_invalid_tools_are_refused(tools, choice, param):
    with pytest.raises(InvalidRequest) as error:
        plan_output(None, tools, choice)
    assert error.value.param == param


def test_split_tool_calls_parses_qwen_blocks():
    content, calls = split_tool_calls("Let me check.\n" + CALL_TEXT, FUNCTIONS)
    assert content == "Let me check."
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call>',  # broken JSON
    '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>',  # unknown function
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',  # cut by max_tokens
])
def test_malformed_calls_come_back_as_plain_content(text):
    content, calls = split_tool_calls(text, FUNCTIONS)
    assert calls == [] and content == text


def test_tool_call_stream_holds_back_the_call_and_streams_the_rest():
    stream = ToolCallStream(FUNCTIONS)
    pieces = ["Sure. ", "<tool", "_call>\n{\"name\"", ': "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>']
    shown = [stream.feed(piece) for piece in pieces]
    assert "".join(shown) == "Sure. "
    rest, calls = stream.finish()
    assert rest == "" and calls[0]["function"]["name"] == "get_weather"


def test_tool_call_stream_releases_text_that_was_not_a_call():
    stream = ToolCallStream(FUNCTIONS)
    assert stream.feed("a <tool") == "a "
    assert stream.feed("box> b") == "<toolbox> b"
    assert stream.finish() == ("", [])


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '```json\n{\n  "name": "get_weather",\n  "arguments": {"city": "Paris"}\n}\n```',
    '```\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```\n',
])
def test_a_whole_answer_that_is_an_untagged_call_is_that_call(text):
    """Small models with tool_choice auto (Ollama's only mode) often drop the tags."""
    content, calls = split_tool_calls(text, FUNCTIONS)
    assert content is None and json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    stream = ToolCallStream(FUNCTIONS)
    assert "".join(stream.feed(text[i:i + 5]) for i in range(0, len(text), 5)) == "", "held, never shown"
    rest, streamed = stream.finish()
    assert rest == "" and streamed[0]["function"] == calls[0]["function"]


@pytest.mark.parametrize("text", [
    '{"name": "launch_rockets", "arguments": {}}',  # not an offered function
    '{"name": "get_weather", "arguments": {}, "why": "x"}',  # more than a call
    '{"city": "Paris"}',  # a JSON answer
    '{"name": "get_weather", "arguments": {"town": "Paris"}}',  # arguments get_weather would refuse
    '```json\n{"name": "get_weather", "arguments": {"city": 75}}\n```',
    'Call {"name": "get_weather", "arguments": {}}',  # not the whole answer
    '```python\nprint("hi")\n```',
])
def test_other_answers_stay_content_and_stream_as_soon_as_they_can(text):
    assert split_tool_calls(text, FUNCTIONS) == (text, [])
    stream = ToolCallStream(FUNCTIONS)
    shown = "".join(stream.feed(text[i:i + 5]) for i in range(0, len(text), 5))
    rest, calls = stream.finish()
    assert shown + rest == text and calls == []
    if not text.startswith(("{", "```json")):
        assert shown, "text that cannot be an untagged call is not held to the end"


@pytest.fixture
def tool_client():
    engine = FakeEngine(answer=lambda prompt: CALL_TEXT)
    with fake_runtime(engine) as runtime, TestClient(create_app(runtime), base_url=LOCAL_URL) as client:
        yield client, engine


def test_api_returns_tool_calls(tool_client):
    client, engine = tool_client
    body = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "weather in Paris?"}], "tools": [WEATHER]}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    assert engine.grammars_checked == [plan_output(None, [WEATHER], None).grammar], \
        "the tool grammar is checked before generation"


def test_api_streams_tool_calls(tool_client):
    client, _ = tool_client
    response = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "weather?"}], "tools": [WEATHER], "stream": True})
    chunks = [payload for payload in sse_events(response.text)[0] if payload != DONE]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert not any(d.get("content") for d in deltas), "the raw <tool_call> text is not streamed"
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert calls[0][0]["index"] == 0 and calls[0][0]["function"]["name"] == "get_weather"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_history_reaches_the_model_as_qwen_writes_it(tool_client):
    client, engine = tool_client
    prompts = []
    engine.answer = lambda prompt: prompts.append(prompt) or CALL_TEXT
    response = client.post("/v1/chat/completions", json={"tools": [WEATHER], "tool_choice": "none", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]})
    assert response.status_code == 200
    # The fake tokenizer drops control tokens on the way back: the prompt reads without them.
    [prompt] = prompts
    earlier_call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert "assistant\n" + earlier_call in prompt, "the call is rendered with its arguments as an object"
    assert prompt.index(earlier_call) < prompt.index('user\n<tool_response>\n{"temp_c": 21}\n</tool_response>')
    assert TOOL_RESULT_NOTE in prompt[prompt.index("</tool_response>"):], "after the result, the note to answer"
    assert "# Tools" not in prompt, "tool_choice none lists no tools"
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"], \
        "with tool_choice none, a <tool_call> the model writes anyway is not a call"
    assert choice["message"]["content"] == CALL_TEXT


def test_invalid_schema_is_400_before_generation(tool_client):
    client, engine = tool_client
    response = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format.json_schema.schema"
    assert engine.batches == [], "nothing was generated"
