"""A loaded model with its engine thread: the one object every front end talks to."""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from jisu.config import EngineConfig
from jisu.engine.llama import LlamaEngine
from jisu.engine.template import render_chat
from jisu.models.resolve import ResolvedModel
from jisu.scheduler.loop import DEFAULT_HOST_CACHE_MB, DEFAULT_MAX_QUEUE, Scheduler
from jisu.scheduler.prefix_cache import common_prefix_length
from jisu.scheduler.request import Request
from jisu.scheduler.turns import ChatTurns
from jisu.types import ChatMessage, Event, Failed, Finished, SamplingParams

@dataclass(frozen=True)
class ModelInfo:
    name: str  # what users see: "Qwen2.5-0.5B-Instruct"
    id: str  # what API clients send as "model"
    quantization: str
    context_size: int
    path: str
    fallback_note: str | None


class Runtime:
    def __init__(self, engine, info: ModelInfo, max_queue: int = DEFAULT_MAX_QUEUE,
                 host_cache_mb: int = DEFAULT_HOST_CACHE_MB, reuse_prefixes: bool = True) -> None:
        """Start the engine thread for an already loaded engine (tests pass a fake one)."""
        self.engine = engine
        self.info = info
        self.tokenizer = engine.tokenizer
        self.scheduler = Scheduler(engine, max_queue, host_cache_mb * 10**6, reuse_prefixes,
                                   chat_turns=chat_turns(self.tokenizer))

    @classmethod
    def load(cls, model: ResolvedModel, config: EngineConfig, **options) -> Runtime:
        """Load the model with llama.cpp and start serving it (options: see __init__)."""
        config.model_path = model.path
        engine = LlamaEngine(config)
        try:
            info = ModelInfo(
                name=model.display_name if model.alias else (engine.metadata("general.name") or model.display_name),
                id=model.alias or model.path.name,
                quantization=model.quant or _quant_from_description(engine.description()),
                context_size=engine.ctx_size,
                path=str(model.path),
                fallback_note=model.fallback_note,
            )
            return cls(engine, info, **options)
        except BaseException:
            engine.close()
            raise

    def chat_tokens(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None = None) -> list[int]:
        return self.tokenizer.tokenize_segments(render_chat(messages, tools))

    def submit(self, prompt_tokens: list[int], sampling: SamplingParams, sink) -> Request:
        return self.scheduler.submit(Request(prompt_tokens, sampling, sink))

    def stream(self, prompt_tokens: list[int], sampling: SamplingParams) -> Iterator[Event]:
        """Events of one request, for synchronous callers. Closing the iterator early (or
        Ctrl-C while reading it) cancels the request and waits until it is freed."""
        events: queue.Queue[Event] = queue.Queue()
        request = self.submit(prompt_tokens, sampling, events.put)
        finished = False
        try:
            while not finished:
                event = events.get()
                finished = isinstance(event, (Finished, Failed))
                yield event
        finally:
            if not finished:
                request.cancel()
                while not isinstance(events.get(timeout=60), (Finished, Failed)):
                    pass

    def close(self) -> None:
        self.scheduler.close()
        self.engine.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def chat_turns(tokenizer) -> ChatTurns:
    """The template's turn markers in tokens, read off rendered conversations: the reply
    opening is what the generation prompt adds; the closing is what two next prompts share
    after the answer, up to where their user messages differ (none if BPE merged the
    answer with what follows it)."""
    question, answer = [ChatMessage("user", "Hi")], ChatMessage("assistant", "Hello")
    render = lambda messages, **options: tokenizer.tokenize_segments(render_chat(messages, **options))  # noqa: E731
    asked = render(question)
    reply_opening = asked[len(render(question, add_generation_prompt=False)):]
    answered = asked + tokenizer.tokenize("Hello")
    one, other = (render(question + [answer, ChatMessage("user", text)]) for text in ("A", "B"))
    closing = one[len(answered):common_prefix_length(one, other)] if one[:len(answered)] == answered else []
    return ChatTurns(tuple(reply_opening), tuple(closing))


def _quant_from_description(description: str) -> str:
    # llama.cpp describes a model as "<arch> <size> <type>", e.g. "qwen2 1B Q4_K - Medium".
    parts = description.split(" ", 2)
    return parts[2] if len(parts) == 3 else description
