"""The front door: a loaded model with its engine thread, and the verbs every front end needs.

The server and the CLI call only this: prepare a chat or a completion (template -> token
ids, checked against the model before anything starts), start it (admitted or refused at
once), read its events, cancel it, ask what is served, close. Nothing outside reaches the
engine or the scheduler behind it; this module is where models, engine and scheduler are
put together.
"""

from __future__ import annotations

import functools
import queue
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from jisu.config import DEFAULT_HOST_CACHE_MB, DEFAULT_MAX_QUEUE, EngineConfig
from jisu.engine.llama import LlamaEngine
from jisu.engine.protocol import Engine, Tokenizer
from jisu.engine.template import render_chat
from jisu.models.digest import file_sha256
from jisu.models.resolve import ResolvedModel
from jisu.scheduler.loop import Counters, Scheduler
from jisu.scheduler.request import CacheOwner, Request
from jisu.scheduler.turns import ChatTurns
from jisu.types import ChatMessage, Event, Failed, Finished, FinishReason, InvalidRequest, SamplingParams


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what users see: "Qwen2.5-0.5B-Instruct"
    id: str  # what API clients send as "model"
    quantization: str
    context_size: int
    path: str
    fallback_note: str | None
    architecture: str = ""  # the GGUF's general.architecture: "qwen2"
    size_label: str = ""  # the GGUF's general.size_label: "0.5B"
    sha256: str = ""  # of the model file
    fallback_detail: str | None = None  # why fallback_note's stand-in answers, what to do

    @functools.cached_property
    def fingerprint(self) -> str:
        """OpenAI's system_fingerprint: which weights, in which format, wrote an answer
        ("fp_3f2a9c01de_iq4_nl"), so a client can tell when the server changed under it."""
        quant = re.sub(r"[^a-z0-9]+", "_", self.quantization.lower()).strip("_") or "unknown"
        return f"fp_{self.sha256[:10] or 'unhashed'}_{quant}"


@dataclass(frozen=True)
class Prompt:
    """A request ready to start: its token ids and how to pick the answer's tokens, both
    checked against this model (vocabulary, grammar, context size)."""

    tokens: list[int]
    sampling: SamplingParams


class Generation:
    """A started request, as its caller holds it."""

    def __init__(self, request: Request) -> None:
        self._request = request

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Safe from any thread; the answer ends within one engine step, and its Finished
        event carries `reason`."""
        self._request.cancel(reason)


class Runtime:
    def __init__(self, engine: Engine, info: ModelInfo, max_queue: int = DEFAULT_MAX_QUEUE,
                 host_cache_mb: int = DEFAULT_HOST_CACHE_MB, reuse_prefixes: bool = True) -> None:
        """Start the engine thread for an already loaded engine (tests pass a fake one)."""
        self.info = info
        self._engine = engine
        self._scheduler = Scheduler(engine, max_queue, host_cache_mb * 10**6, reuse_prefixes,
                                    chat_turns=ChatTurns.of_template(engine.tokenizer))

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
                fallback_detail=model.fallback_detail,
                architecture=engine.metadata("general.architecture") or "",
                size_label=engine.metadata("general.size_label") or "",
                sha256=file_sha256(model.path),  # once per file: remembered in JISU_HOME
            )
            return cls(engine, info, **options)
        except BaseException:
            engine.close()
            raise

    @property
    def tokenizer(self) -> Tokenizer:
        """The served model's text <-> token ids, for callers that count tokens."""
        return self._engine.tokenizer

    # ---- preparing: every check that can fail happens here, before anything starts ------

    def prepare_chat(self, messages: Sequence[ChatMessage], sampling: SamplingParams,
                     tools: Sequence[dict] | None = None) -> Prompt:
        """The conversation through the chat template, asking for the assistant's answer;
        ContextOverflow when it does not fit."""
        return self._checked(self.tokenizer.tokenize_segments(render_chat(messages, tools)), sampling)

    def prepare_completion(self, text: str, sampling: SamplingParams) -> Prompt:
        """A raw prompt, continued as written. It may carry ChatML markers on purpose: that
        is what a completion is for, so they are read as control tokens."""
        return self._checked(self.tokenizer.tokenize(text, special=True), sampling)

    def _checked(self, tokens: list[int], sampling: SamplingParams) -> Prompt:
        vocabulary = self.tokenizer.n_vocab
        for token in sampling.logit_bias:
            if token >= vocabulary:
                raise InvalidRequest(f"logit_bias: token {token} is not in the vocabulary "
                                     f"(0..{vocabulary - 1})", "logit_bias")
        if sampling.grammar:
            self._engine.check_grammar(sampling.grammar, sampling.grammar_trigger)
        self._scheduler.check_fits(len(tokens), sampling.max_tokens)
        return Prompt(tokens, sampling)

    # ---- running ------------------------------------------------------------------------

    def start(self, prompt: Prompt, on_event: Callable[[Event], None], owner: CacheOwner = CacheOwner()) -> Generation:
        """Admit the request now or raise (QueueFull, SchedulerClosed). `on_event` is called
        on the engine thread, for each event in order, and must not block. `owner` says whose
        cached state the prompt may start from (a server names the user, and the conversation
        when it knows it); the default is one owner for every in-process caller."""
        return Generation(self._scheduler.submit(Request(prompt.tokens, prompt.sampling, on_event, owner)))

    def stream(self, prompt: Prompt) -> Iterator[Event]:
        """Events of one request, for synchronous callers. Closing the iterator early (or
        Ctrl-C while reading it) cancels the request and waits until it is freed."""
        events: queue.Queue[Event] = queue.Queue()
        generation = self.start(prompt, events.put)
        finished = False
        try:
            while not finished:
                event = events.get()
                finished = isinstance(event, (Finished, Failed))
                yield event
        finally:
            if not finished:
                generation.cancel()
                while not isinstance(events.get(timeout=60), (Finished, Failed)):
                    pass

    # ---- state --------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """The engine thread runs and takes requests."""
        return self._scheduler.alive

    def stats(self) -> dict[str, int]:
        """Running, queued, slots and host cache, right now (for /metrics)."""
        return self._scheduler.stats()

    @property
    def counters(self) -> Counters:
        """Totals since start: prompt tokens run and reused, steps, interruptions."""
        return self._scheduler.counters

    def close(self) -> None:
        self._scheduler.close()
        self._engine.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _quant_from_description(description: str) -> str:
    # llama.cpp describes a model as "<arch> <size> <type>", e.g. "qwen2 1B Q4_K - Medium".
    parts = description.split(" ", 2)
    return parts[2] if len(parts) == 3 else description
