"""Structured output: what a chat request asks the answer to look like, and reading it back.

Both response formats and tool calls work by constrained decoding: the request becomes a
grammar (JSON, JSON valid against a schema, or Qwen2.5's `<tool_call>` blocks whose arguments
follow each function's parameter schema), so what comes back parses by construction. Nothing
here knows about HTTP: the server and the CLI use it alike.

- `response_format.py`  reading OpenAI's `response_format`; the schema instruction the model reads
- `tools.py`            reading `tools` and `tool_choice`; the grammar of a call, tagged or not, and
                        the pattern that starts it; the note that follows tool results
- `plan.py`             `plan_output`: both of the above combined into one `OutputPlan`
- `tool_calls.py`       the model's answer back into OpenAI tool calls, whole or streamed

The GBNF itself is built by `jisu.engine.grammar` (it needs llama.cpp's schema converter).
"""
