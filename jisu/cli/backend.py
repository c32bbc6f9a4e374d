"""What answers `jisu ask` and `jisu chat`: a running `jisu serve` (jisu.cli.remote) or the model
loaded in this process. Both take the same messages and sampling and give the same events, so
the commands print, stop and report an answer the same way whichever answers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

from jisu.types import ChatMessage, Event, SamplingParams

if TYPE_CHECKING:
    from jisu.runtime import Runtime


@dataclass(frozen=True)
class ServedModel:
    name: str  # "Qwen2.5-0.5B-Instruct"
    id: str  # what API requests name as "model"
    quantization: str
    context_size: int  # the most tokens one conversation may hold
    fallback_note: str | None = None  # one sentence, when the stand-in answers instead of the default
    fallback_detail: str | None = None  # why, and what to do (shown with -v)


class Backend(Protocol):
    where: str  # for people: "in-process", "the jisu server at http://..."
    model: ServedModel

    def answer(self, messages: Sequence[ChatMessage], sampling: SamplingParams,
               response_format: dict[str, Any] | None = None) -> Iterator[Event]:
        """Start an answer. Whatever is wrong with the request (InvalidRequest, ContextOverflow)
        is raised here, before any event; closing the iterator early cancels the answer."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """The model loaded in this process, through the Runtime (one conversation at a time)."""

    where = "in-process"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        info = runtime.info
        self.model = ServedModel(info.name, info.id, info.quantization, info.context_size, info.fallback_note,
                                 info.fallback_detail)

    def answer(self, messages: Sequence[ChatMessage], sampling: SamplingParams,
               response_format: dict[str, Any] | None = None) -> Iterator[Event]:
        if response_format is not None:
            # The server does the same for a response_format; structured output compiles
            # grammars with llama.cpp, so it is imported only when asked for.
            from jisu.structured.plan import plan_output
            from jisu.structured.response_format import with_schema_instruction

            plan = plan_output(response_format, None, None)
            sampling = replace(sampling, grammar=plan.grammar)
            messages = with_schema_instruction(list(messages), plan.schema_instruction)
        return self.runtime.stream(self.runtime.prepare_chat(messages, sampling))

    def close(self) -> None:
        self.runtime.close()
