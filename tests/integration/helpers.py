"""Small helpers for driving the real runtime in tests."""

from __future__ import annotations

from jisu.runtime import Prompt
from jisu.types import ChatMessage, Failed, Finished, SamplingParams, TextDelta


def run_chat(runtime, messages, **sampling) -> tuple[str, Finished]:
    """Generate one answer synchronously; fails the test on an engine error."""
    if isinstance(messages, str):
        messages = [ChatMessage("user", messages)]
    return run_prompt(runtime, runtime.prepare_chat(messages, SamplingParams(**sampling)))


def run_tokens(runtime, tokens, **sampling) -> tuple[str, Finished]:
    return run_prompt(runtime, Prompt(tokens, SamplingParams(**sampling)))


def run_prompt(runtime, prompt: Prompt) -> tuple[str, Finished]:
    text, finished = [], None
    for event in runtime.stream(prompt):
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, Finished):
            finished = event
        elif isinstance(event, Failed):
            raise AssertionError(f"engine failed: {event.message}")
    return "".join(text), finished
