"""Ollama's wire format: request schemas (validated, with limits), the `options` mapping, and
the JSON objects the /api/... routes answer with.

Field names and shapes follow Ollama's API (docs/api.md in ollama/ollama): `options` holds the
sampling parameters under Ollama's names (num_predict, repeat_penalty...); tool call arguments
are JSON objects, not strings; durations are nanoseconds; times are RFC 3339. Options jisu has
no use for (mirostat, num_gpu, num_ctx...) are accepted and named back to the client in the
X-Jisu-Ignored-Options header, so a setting that changed nothing is never silent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationInfo, field_validator

from jisu import __version__
from jisu.runtime import ModelInfo
from jisu.server.logprobs import token_entries
from jisu.server.protocol import (
    MAX_CONTENT_CHARS,
    MAX_MESSAGES,
    FrequencyPenalty,
    MinP,
    PresencePenalty,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    top_logprobs_only_with_logprobs,
)
from jisu.types import (
    MAX_SEED,
    MAX_TOP_LOGPROBS,
    SAMPLING_LIMITS,
    ChatMessage,
    Finished,
    FinishReason,
    InvalidRequest,
    SamplingParams,
    TokenLogprob,
)

# The level of Ollama's API these routes answer (tools, JSON-schema formats, capabilities in
# /api/show); clients compare it to decide what to offer. jisu's own version travels beside it.
OLLAMA_API_VERSION = "0.9.0"
IGNORED_OPTIONS_HEADER = "X-Jisu-Ignored-Options"
MAX_NAMED_IGNORED = 20  # a header names at most this many; the rest are counted
_OPTION_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # what may appear in the header as given
NEVER_EXPIRES = "9999-12-31T23:59:59Z"  # /api/ps: jisu keeps its one model loaded until it stops

Text = Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]
# Ollama's conventions: seed -1 is a random seed, num_predict -1 (or -2) means no limit but the context.
OllamaSeed = Annotated[int, Field(ge=-1, le=MAX_SEED)]
NumPredict = Annotated[int, Field(ge=-2, le=int(SAMPLING_LIMITS["max_tokens"].high))]
RepeatLastN = Annotated[int, Field(ge=-1, le=int(SAMPLING_LIMITS["penalty_last_n"].high))]


# ---- requests -------------------------------------------------------------------------


class OllamaOptions(BaseModel):
    """`options`: the sampling parameters jisu supports, under Ollama's names. Any other key
    is kept aside (model_extra) to be reported as ignored."""

    model_config = ConfigDict(extra="allow")

    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None
    seed: OllamaSeed | None = None
    num_predict: NumPredict | None = None
    stop: list[Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]] | str | None = None
    repeat_penalty: RepetitionPenalty | None = None
    repeat_last_n: RepeatLastN | None = None
    presence_penalty: PresencePenalty | None = None
    frequency_penalty: FrequencyPenalty | None = None

    @field_validator("num_predict")
    @classmethod
    def some_tokens(cls, value: int | None) -> int | None:
        if value == 0:
            raise ValueError("must be at least 1, or -1 for no limit but the context")
        return value

    def ignored(self) -> list[str]:
        return list(self.model_extra or {})

    def sampling_params(self, context_size: int) -> SamplingParams:
        """Qwen's defaults (SamplingParams) for whatever the options leave out."""
        chosen: dict[str, Any] = {}
        for ollama_name, name in _OPTION_NAMES.items():
            value = getattr(self, ollama_name)
            if value is not None:
                chosen[name] = value
        if chosen.get("seed") == -1:
            del chosen["seed"]  # Ollama's "random"
        if chosen.get("max_tokens", 0) < 0:
            del chosen["max_tokens"]
        if chosen.get("penalty_last_n") == -1:
            chosen["penalty_last_n"] = context_size  # Ollama's "the whole context"
        if isinstance(self.stop, str):
            chosen["stop"] = [self.stop]
        try:
            return SamplingParams(**chosen)
        except InvalidRequest as error:
            raise InvalidRequest(error.message, ollama_param(error.param)) from None


# jisu's SamplingParams field for each option (stop is handled as a string or a list).
_OPTION_NAMES = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
                 "seed": "seed", "num_predict": "max_tokens", "stop": "stop",
                 "repeat_penalty": "repetition_penalty", "repeat_last_n": "penalty_last_n",
                 "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}
_REQUEST_PARAMS = {name: f"options.{ollama}" for ollama, name in _OPTION_NAMES.items()}


def ollama_param(param: str | None) -> str | None:
    """The request field an error from jisu's core names, as an Ollama client sent it."""
    if param is None:
        return None
    if param.startswith("response_format"):
        return "format"
    return _REQUEST_PARAMS.get(param, param)


def ignored_options_header(names: list[str]) -> dict[str, str]:
    """{} when nothing was ignored; names that are not plain option names are only counted."""
    if not names:
        return {}
    shown = [name for name in names if _OPTION_NAME.fullmatch(name)][:MAX_NAMED_IGNORED]
    more = len(names) - len(shown)
    value = ", ".join(shown)
    if more:
        value = f"{value} and {more} more" if shown else f"{more} options"
    return {IGNORED_OPTIONS_HEADER: value}


class OllamaFunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(max_length=256)]
    arguments: dict[str, Any] | str = Field(default_factory=dict)  # an object, as Ollama sends it


class OllamaToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    function: OllamaFunctionCall


def _no_images(images: list[Any] | None) -> list[Any] | None:
    if images:
        raise ValueError("this model reads text only; images cannot be read")
    return images


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. "thinking": this model does not think

    role: Literal["system", "user", "assistant", "tool"]
    content: Text | None = ""
    images: list[Any] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None  # which tool a role: tool message answers

    @field_validator("images")
    @classmethod
    def text_only(cls, images: list[Any] | None) -> list[Any] | None:
        return _no_images(images)

    def chat_message(self) -> ChatMessage:
        calls = [{"function": call.function.model_dump()} for call in self.tool_calls or []] or None
        return ChatMessage(self.role, self.content or "", self.tool_name, calls)


class _OllamaRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None  # any name: answered by the served model, which each answer names
    options: OllamaOptions | None = None
    format: Literal["", "json"] | dict[str, Any] | None = None
    stream: StrictBool | None = None  # Ollama streams unless told not to (null: its default)
    keep_alive: str | float | None = None  # accepted, and ignored: jisu's one model stays loaded
    template: str | None = None
    think: StrictBool | str | None = None
    logprobs: StrictBool | None = None  # Ollama 0.12's, in the shape of OpenAI's chat logprobs
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None

    @field_validator("top_logprobs")
    @classmethod
    def only_with_logprobs(cls, top_logprobs: int | None, info: ValidationInfo) -> int | None:
        return top_logprobs_only_with_logprobs(top_logprobs, info)

    @field_validator("template")
    @classmethod
    def no_template(cls, template: str | None) -> str | None:
        if template:
            raise ValueError("jisu renders Qwen's own chat template and cannot run a Go template; "
                             "send raw: true to /api/generate with a prompt written out in full")
        return template

    @field_validator("think")
    @classmethod
    def no_thinking(cls, think: bool | str | None) -> bool | str | None:
        if think not in (None, False):
            raise ValueError("this model does not think; leave think unset or false")
        return think

    @property
    def streams(self) -> bool:
        return self.stream is not False

    def response_format(self) -> dict[str, Any] | None:
        """`format` as the structured-output machinery reads it (OpenAI's response_format)."""
        if self.format == "json":
            return {"type": "json_object"}
        if isinstance(self.format, dict):
            return {"type": "json_schema", "json_schema": {"name": "format", "schema": self.format}}
        return None

    def sampling_params(self, context_size: int) -> SamplingParams:
        sampling = (self.options or OllamaOptions()).sampling_params(context_size)
        sampling.logprobs, sampling.top_logprobs = bool(self.logprobs), self.top_logprobs or 0
        return sampling

    def ignored_options(self) -> list[str]:
        return self.options.ignored() if self.options else []


class OllamaChatRequest(_OllamaRequest):
    # Empty: Ollama's "load the model" request, answered at once (jisu's model is loaded).
    messages: Annotated[list[OllamaMessage], Field(max_length=MAX_MESSAGES)] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None  # the model decides whether to call one (no tool_choice)


class OllamaGenerateRequest(_OllamaRequest):
    prompt: Text = ""  # empty: Ollama's "load the model" request
    system: Text | None = None
    raw: StrictBool | None = None  # the prompt goes to the model as written, markers and all
    suffix: str | None = None
    images: list[Any] | None = None
    context: list[Any] | None = None

    @field_validator("images")
    @classmethod
    def text_only(cls, images: list[Any] | None) -> list[Any] | None:
        return _no_images(images)

    @field_validator("suffix")
    @classmethod
    def no_suffix(cls, suffix: str | None) -> str | None:
        if suffix:
            raise ValueError("fill-in-the-middle is not supported: jisu has no infill template for this "
                             "model; send the text before the gap as the prompt")
        return suffix

    @field_validator("context")
    @classmethod
    def no_context(cls, context: list[Any] | None) -> list[Any] | None:
        if context:
            raise ValueError("jisu returns no context to send back; keep the conversation as messages "
                             "and send them to /api/chat")
        return context

    def chat_messages(self) -> list[ChatMessage]:
        system = [ChatMessage("system", self.system)] if self.system else []
        return [*system, ChatMessage("user", self.prompt)]


class OllamaShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    name: str | None = None  # what older clients send instead of model
    verbose: StrictBool = False


# ---- responses ------------------------------------------------------------------------


def rfc3339(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def done_reason(reason: FinishReason) -> str:
    return "length" if reason is FinishReason.LENGTH else "stop"


def final_stats(finished: Finished) -> dict[str, Any]:
    """Ollama's counts and durations (nanoseconds) of a finished answer. jisu's model is always
    loaded (load_duration 0); waiting in the queue counts in total_duration only."""
    timings, usage = finished.timings, finished.usage
    total = timings.time_to_first_token_s + timings.decode_s
    return {
        "done": True,
        "done_reason": done_reason(finished.reason),
        "total_duration": _ns(total),
        "load_duration": 0,
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": _ns(timings.prefill_s),
        "eval_count": usage.completion_tokens,
        "eval_duration": _ns(total - timings.queued_s - timings.prefill_s),
    }


def ollama_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-shaped calls (split_tool_calls) as Ollama's: arguments an object, not a string."""
    return [{"function": {"name": call["function"]["name"],
                          "arguments": json.loads(call["function"]["arguments"])}} for call in calls]


class AnswerWriter:
    """The objects of one /api/chat or /api/generate answer, streamed or whole."""

    def __init__(self, model: str, kind: Literal["chat", "generate"]) -> None:
        self.model = model
        self.kind = kind

    def _object(self, text: str, tool_calls: list[dict[str, Any]] | None = None,
                logprobs: list[TokenLogprob] | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "created_at": rfc3339()}
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                message["tool_calls"] = ollama_tool_calls(tool_calls)
            body["message"] = message
        else:
            body["response"] = text
        if logprobs is not None:
            body["logprobs"] = token_entries(logprobs)
        return {**body, **extra}

    def piece(self, text: str, logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
        """A piece of the answer; with logprobs asked for, those of the tokens it shows."""
        return self._object(text, logprobs=logprobs, done=False)

    def tool_calls(self, calls: list[dict[str, Any]]) -> dict[str, Any]:
        return self._object("", calls, done=False)

    def final(self, finished: Finished) -> dict[str, Any]:
        return self._object("", **final_stats(finished))

    def whole(self, text: str, calls: list[dict[str, Any]], finished: Finished,
              logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
        return self._object(text, calls, logprobs, **final_stats(finished))

    def loaded(self) -> dict[str, Any]:
        """The answer to a request with nothing to answer: Ollama's way to load a model."""
        return self._object("", done=True, done_reason="load")


def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION, "jisu": __version__}


def model_details(info: ModelInfo) -> dict[str, Any]:
    family = info.architecture or "qwen2"
    return {"parent_model": "", "format": "gguf", "family": family, "families": [family],
            "parameter_size": info.size_label, "quantization_level": info.quantization.upper()}


def _file_facts(info: ModelInfo) -> tuple[int, str, str]:
    """(size in bytes, modified_at, digest). The digest names the file by its name, size and
    time (hashing ~0.5 GB on each request would cost seconds): stable while the file is."""
    try:
        stat = os.stat(info.path)
        size, modified = stat.st_size, stat.st_mtime
    except OSError:
        size, modified = 0, 0.0
    identity = f"{os.path.basename(info.path)}:{size}:{modified}".encode()
    return size, rfc3339(datetime.fromtimestamp(modified, timezone.utc)), hashlib.sha256(identity).hexdigest()


def model_entry(info: ModelInfo) -> dict[str, Any]:
    """The served model in /api/tags."""
    size, modified_at, digest = _file_facts(info)
    return {"name": info.id, "model": info.id, "modified_at": modified_at, "size": size, "digest": digest,
            "details": model_details(info)}


def running_entry(info: ModelInfo) -> dict[str, Any]:
    """The served model in /api/ps: always loaded, on the CPU (no VRAM)."""
    size, _, digest = _file_facts(info)
    return {"name": info.id, "model": info.id, "size": size, "digest": digest, "details": model_details(info),
            "expires_at": NEVER_EXPIRES, "size_vram": 0, "context_length": info.context_size}


# Informative only: jisu renders Qwen's ChatML itself (jisu.engine.template), tools included.
TEMPLATE = ("{{- if .System }}<|im_start|>system\n{{ .System }}{{ if .Tools }}\n\n# Tools\n\n<tools>\n"
            "{{ .Tools }}\n</tools>{{ end }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n"
            "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n")


def show(info: ModelInfo) -> dict[str, Any]:
    """/api/show: what the model can do, its details, and the context it is served with."""
    _, modified_at, _ = _file_facts(info)
    defaults = SamplingParams()
    parameters = "\n".join([
        'stop "<|im_start|>"', 'stop "<|im_end|>"',
        f"temperature {defaults.temperature}", f"top_p {defaults.top_p}", f"top_k {defaults.top_k}",
        f"repeat_penalty {defaults.repetition_penalty}", f"repeat_last_n {defaults.penalty_last_n}",
        f"num_ctx {info.context_size}",
    ])
    family = info.architecture or "qwen2"
    return {
        "modelfile": f"# jisu serves {info.name}; it has no Modelfile\nFROM {info.id}\n",
        "parameters": parameters,
        "template": TEMPLATE,
        "license": "",
        "details": model_details(info),
        "model_info": {
            "general.architecture": family,
            "general.name": info.name,
            "general.size_label": info.size_label,
            f"{family}.context_length": info.context_size,  # as served (--ctx-size), not as trained
        },
        "capabilities": ["completion", "tools"],
        "modified_at": modified_at,
    }
