"""Qwen2.5's ChatML chat template, written out in Python.

The template shipped inside the GGUF is Jinja; rendering untrusted Jinja is a way to run
code, so we write the same format by hand and check it against the model's own template
(in a sandbox) in the integration tests.

The result is a list of segments rather than one string: control markers such as
`<|im_start|>` are tokenized as special tokens, while message text is tokenized as plain
text, so a user typing "<|im_end|>" cannot forge a turn boundary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from jisu.types import ChatMessage, InvalidRequest

DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

TOOLS_PREAMBLE = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_POSTAMBLE = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


@dataclass(frozen=True)
class Segment:
    text: str
    special: bool  # True: tokenize with control tokens recognised


def prompt_text(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments)


def render_chat(
    messages: Sequence[ChatMessage],
    tools: Sequence[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
) -> list[Segment]:
    """Render messages exactly as Qwen2.5-Instruct's chat template does."""
    if not messages:
        raise InvalidRequest("messages must not be empty", "messages")
    out = _Builder()
    system_text, body = split_system(messages)
    out.open("system")
    out.text(system_text)
    if tools:
        out.text(TOOLS_PREAMBLE)
        for tool in tools:
            out.text("\n" + _to_json(tool))
        out.text(TOOLS_POSTAMBLE)
    out.close()

    for index, message in enumerate(body):
        previous = body[index - 1].role if index > 0 else None
        following = body[index + 1].role if index + 1 < len(body) else None
        if message.role == "assistant" and message.tool_calls:
            _render_assistant_tool_calls(out, message)
        elif message.role == "tool":
            if previous != "tool":
                out.special(IM_START)
                out.text("user")
            out.text("\n<tool_response>\n" + message.content + "\n</tool_response>")
            if following != "tool":
                out.close()
        else:  # user, assistant, and a system message that is not the first one
            out.open(message.role)
            out.text(message.content)
            out.close()
    if add_generation_prompt:
        out.open("assistant")
    return out.segments


def turn_markers(tokenizer) -> tuple[list[int], list[int]]:
    """How the template marks turns, in tokens: (reply_opening, closing). A prompt ending
    with reply_opening asks for an assistant's answer (what the generation prompt adds);
    closing follows that answer in the chat's next prompt, up to where the next user
    message starts (empty if BPE merged the answer with what follows it). Read off rendered
    conversations, so it holds for whatever tokenizer renders them."""
    question, answer = [ChatMessage("user", "Hi")], ChatMessage("assistant", "Hello")

    def tokens(messages: Sequence[ChatMessage], **options: Any) -> list[int]:
        return tokenizer.tokenize_segments(render_chat(messages, **options))

    asked = tokens(question)
    reply_opening = asked[len(tokens(question, add_generation_prompt=False)):]
    answered = asked + tokenizer.tokenize("Hello")
    one, other = (tokens(question + [answer, ChatMessage("user", text)]) for text in ("A", "B"))
    if one[:len(answered)] != answered:
        return reply_opening, []
    shared = next((i for i, (a, b) in enumerate(zip(one, other)) if a != b), min(len(one), len(other)))
    return reply_opening, one[len(answered):shared]


def split_system(messages: Sequence[ChatMessage]) -> tuple[str, Sequence[ChatMessage]]:
    """The system prompt the model reads (the first message's if it is a system message,
    else Qwen's default) and the messages after it."""
    if messages and messages[0].role == "system":
        return messages[0].content, messages[1:]
    return DEFAULT_SYSTEM_PROMPT, messages


def _render_assistant_tool_calls(out: _Builder, message: ChatMessage) -> None:
    out.special(IM_START)
    out.text("assistant")
    if message.content:
        out.text("\n" + message.content)
    for call in message.tool_calls or []:
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):  # OpenAI sends arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                raise InvalidRequest(
                    "tool_calls[].function.arguments must be a JSON object string",
                    "messages",
                ) from None
        out.text(
            '\n<tool_call>\n{"name": "'
            + str(function.get("name", ""))
            + '", "arguments": '
            + _to_json(arguments)
            + "}\n</tool_call>"
        )
    out.close()


def _to_json(value: Any) -> str:
    # Matches transformers' `tojson` filter, which Qwen's template was written against.
    return json.dumps(value, ensure_ascii=False)


class _Builder:
    """Collects segments, merging neighbours of the same kind."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []

    def _add(self, text: str, special: bool) -> None:
        if not text:
            return
        if self.segments and self.segments[-1].special == special:
            last = self.segments.pop()
            text = last.text + text
        self.segments.append(Segment(text, special))

    def text(self, text: str) -> None:
        self._add(text, special=False)

    def special(self, text: str) -> None:
        self._add(text, special=True)

    def open(self, role: str) -> None:
        self.special(IM_START)
        self.text(role + "\n")

    def close(self) -> None:
        self.special(IM_END)
        self.text("\n")
