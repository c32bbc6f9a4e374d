"""OpenAI wire format: request schemas (validated, with limits) and response builders.

Every field we read is typed and range-checked, so a bad value is a 400 naming that field.
Nothing a request asks for is silently dropped: as OpenAI does, an unknown top-level field is
a 400 `unrecognized_request_argument`, and an OpenAI parameter jisu cannot honour (audio,
n > 1, web search...) a 400 `unsupported_parameter` saying why. Parameters that change nothing
about the answer (user, metadata, cache hints) are accepted. Inside messages and tools unknown
fields stay allowed: clients send back whole response messages (refusal, annotations...).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from jisu.server.errors import UNSUPPORTED_PARAMETER
from jisu.server.logprobs import chat_logprobs, completion_logprobs
from jisu.types import (
    LOGIT_BIAS_LIMIT,
    MAX_LOGIT_BIAS,
    MAX_TOP_LOGPROBS,
    SAMPLING_LIMITS,
    FinishReason,
    SamplingParams,
    Timings,
    TokenLogprob,
    Usage,
)

MAX_MESSAGES = 4096
MAX_CONTENT_CHARS = 1_000_000
MAX_ID_CHARS = 100  # conversation and message ids are ~27 characters; longer is not one
# Numbers are finite: NaN and Infinity (which Python's JSON parser accepts) are refused as
# such, instead of failing a range check with a misleading message.
Number = Annotated[float, Field(allow_inf_nan=False)]
# What /v1/completions generates when max_tokens is not given (OpenAI's default).
COMPLETION_DEFAULT_MAX_TOKENS = 16
MAX_COMPLETION_LOGPROBS = 5  # the legacy completions' limit of `logprobs` (OpenAI's)


def _limited(name: str) -> Any:
    """A request field bounded by jisu.types.SAMPLING_LIMITS, the limits SamplingParams checks."""
    limit = SAMPLING_LIMITS[name]
    low = {"gt": limit.low} if limit.low_open else {"ge": limit.low}
    return Annotated[int if limit.integer else Number, Field(le=limit.high, **low)]


Temperature, TopP, TopK, MinP = (_limited(n) for n in ("temperature", "top_p", "top_k", "min_p"))
RepetitionPenalty, PresencePenalty, FrequencyPenalty = (
    _limited(n) for n in ("repetition_penalty", "presence_penalty", "frequency_penalty"))
Seed, MaxTokens = _limited("seed"), _limited("max_tokens")
Bias = Annotated[Number, Field(ge=LOGIT_BIAS_LIMIT.low, le=LOGIT_BIAS_LIMIT.high)]


def _refused(why: str, *harmless: Any) -> Any:
    """An OpenAI parameter jisu cannot honour: refused with `why` unless null or one of the
    `harmless` values (those that ask for nothing beyond what jisu does)."""

    def check(value: Any) -> Any:
        if value is None or any(value == ok and type(value) is type(ok) for ok in harmless):
            return value
        raise PydanticCustomError(UNSUPPORTED_PARAMETER, why)

    allowed = ", ".join(repr(ok) for ok in harmless)
    description = f"Not supported: {why}." + (f" Accepted only as {allowed}." if harmless else "")
    return Annotated[Any, AfterValidator(check), Field(description=description)]


def top_logprobs_only_with_logprobs(top_logprobs: int | None, info: ValidationInfo) -> int | None:
    """top_logprobs' validator, for OpenAI's chat and Ollama's requests alike."""
    if top_logprobs is not None and info.data.get("logprobs") is not True:
        raise ValueError("only allowed with logprobs: true")
    return top_logprobs


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: str
    text: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)] = ""

    @model_validator(mode="after")
    def text_only(self) -> ContentPart:
        if self.type != "text":
            raise ValueError(f"this model reads text only; a '{self.type}' part cannot be read")
        return self


class FunctionCall(_Lenient):
    name: str
    arguments: str = "{}"


class ToolCall(_Lenient):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


def _string_or_parts(content: Any) -> Any:
    if content is not None and not isinstance(content, (str, list)):
        raise ValueError("must be a string or a list of content parts")
    return content


class Message(_Lenient):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Annotated[Annotated[str, Field(max_length=MAX_CONTENT_CHARS)] | list[ContentPart] | None,
                       BeforeValidator(_string_or_parts)] = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Lenient):
    include_usage: StrictBool = False


class _SamplingFields(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unrecognized_request_argument, as OpenAI

    model: str | None = None  # any name: answered by the served model (see Serving)
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None
    repetition_penalty: RepetitionPenalty | None = None
    presence_penalty: PresencePenalty | None = None
    frequency_penalty: FrequencyPenalty | None = None
    seed: Seed | None = None
    stop: str | list[str] | None = None
    # OpenAI's shape: token id (as a string) -> a bias added to its logit.
    logit_bias: Annotated[dict[str, Bias], Field(max_length=MAX_LOGIT_BIAS)] | None = None
    n: Annotated[int, Field(ge=1)] = 1
    ignore_eos: StrictBool = False  # extension (as in vLLM and llama-server), for benchmarks
    # Strict: "false" or 0 would otherwise be read as a boolean and change the response's form.
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # who asks, for the caller's own records: changes nothing here

    def sampling_params(self) -> SamplingParams:
        """How to pick the answer's tokens: what the request sets, Qwen's defaults for the
        rest (SamplingParams)."""
        chosen = {name: getattr(self, name) for name in _SAMPLING_FIELDS if getattr(self, name) is not None}
        top_logprobs = self.top_logprobs_asked()
        return SamplingParams(**chosen, max_tokens=self.answer_limit(), stop=self.stop_list(),
                              ignore_eos=self.ignore_eos, logit_bias=self.logit_bias_by_token(),
                              logprobs=top_logprobs is not None, top_logprobs=top_logprobs or 0)

    def answer_limit(self) -> int | None:
        """The most tokens to generate (None: until the answer or the context ends)."""
        return self.max_tokens

    def top_logprobs_asked(self) -> int | None:
        """None: no logprobs; n: each token's logprob and the n likeliest tokens at its place."""
        return None

    @field_validator("logit_bias")
    @classmethod
    def token_ids_as_keys(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key in bias or {}:
            if not key.isdigit():
                raise ValueError(f"keys are token ids (whole numbers as strings), got {key!r}")
        return bias

    def logit_bias_by_token(self) -> dict[int, float]:
        return {int(token): value for token, value in (self.logit_bias or {}).items()}

    @field_validator("n")
    @classmethod
    def only_one_choice(cls, n: int) -> int:
        if n != 1:
            raise PydanticCustomError(UNSUPPORTED_PARAMETER, "only n=1 is supported: jisu generates one choice "
                                                             "per request")
        return n

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


_SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                    "frequency_penalty", "seed")


class ChatCompletionRequest(_SamplingFields):
    # jisu's: a turn of a conversation the server keeps (conversation_turns.py). Before
    # `messages`, whose check depends on them.
    conversation_id: Annotated[str, Field(max_length=MAX_ID_CHARS, description=(
        "A conversation of yours (/v1/conversations): the server puts its system prompt and "
        "history in front, keeps the new user message and records the answer. `messages` then "
        "holds only the new user message, or none to answer again after `parent_message_id` "
        "(regenerate)."))] | None = None
    parent_message_id: Annotated[str, Field(max_length=MAX_ID_CHARS, description=(
        "With conversation_id: the message to continue from (left out: the end of the active "
        "branch; null: none, the new message is a first one). An earlier message starts a new "
        "branch: the user message before an answer regenerates it, the parent of a user message "
        "edits it."))] | None = None
    messages: Annotated[list[Message], Field(max_length=MAX_MESSAGES)]
    max_completion_tokens: MaxTokens | None = None  # OpenAI's newer name for max_tokens
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None

    # Accepted, and change nothing about the answer: records and hints for OpenAI's servers.
    metadata: dict[str, Any] | None = None
    safety_identifier: str | None = None
    parallel_tool_calls: StrictBool | None = None  # the model may write several calls either way
    prompt_cache_key: str | None = None  # jisu finds a conversation's cached prompt by itself
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None

    # OpenAI's, and refused: jisu cannot honour them (see _refused).
    store: _refused("jisu does not store completions", False) = None
    service_tier: _refused("jisu has one service tier", "auto", "default") = None
    modalities: _refused("this model writes text only", ["text"]) = None
    audio: _refused("this model writes text only; it cannot answer in audio") = None
    prediction: _refused("predicted outputs are not supported") = None
    web_search_options: _refused("jisu cannot search the web") = None
    reasoning_effort: _refused("this model does not reason", "none") = None
    verbosity: _refused("this model has no verbosity setting") = None
    moderation: _refused("jisu runs no moderation") = None
    functions: _refused("the deprecated functions are not supported; send them as tools") = None
    function_call: _refused("the deprecated function_call is not supported; send tools and "
                            "tool_choice") = None

    @field_validator("parent_message_id")
    @classmethod
    def only_in_a_conversation(cls, parent: str | None, info: ValidationInfo) -> str | None:
        if parent is not None and info.data.get("conversation_id") is None:
            raise ValueError("only allowed with conversation_id")
        return parent

    @field_validator("messages")
    @classmethod
    def messages_for_the_kind_of_request(cls, messages: list[Message], info: ValidationInfo) -> list[Message]:
        if info.data.get("conversation_id") is None:
            if not messages:
                raise ValueError("at least one message is needed")
        elif len(messages) > 1 or any(message.role != "user" for message in messages):
            raise ValueError("with conversation_id, only the new user message (or none, to answer again): "
                             "the server adds the conversation's history and system prompt")
        return messages

    @field_validator("top_logprobs")
    @classmethod
    def only_with_logprobs(cls, top_logprobs: int | None, info: ValidationInfo) -> int | None:
        return top_logprobs_only_with_logprobs(top_logprobs, info)

    def answer_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def top_logprobs_asked(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_SamplingFields):
    prompt: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)] | list[Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]]
    # Each token's logprob and this many of the likeliest tokens at its place.
    logprobs: Annotated[StrictInt, Field(ge=0, le=MAX_COMPLETION_LOGPROBS)] | None = None
    echo: StrictBool = False
    best_of: _refused("jisu generates one completion per request", 1) = None
    suffix: _refused("fill-in-the-middle is not supported: jisu has no infill template for this model",
                     "") = None

    @field_validator("echo")
    @classmethod
    def not_with_logprobs(cls, echo: bool, info: ValidationInfo) -> bool:
        if echo and info.data.get("logprobs") is not None:
            raise PydanticCustomError(UNSUPPORTED_PARAMETER, "echo cannot be combined with logprobs: jisu "
                                                             "does not compute the prompt's logprobs")
        return echo

    def answer_limit(self) -> int:
        return self.max_tokens or COMPLETION_DEFAULT_MAX_TOKENS

    def top_logprobs_asked(self) -> int | None:
        return self.logprobs

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ValueError("prompt: exactly one prompt string per request")
        return self.prompt[0]


# ---- responses ------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


TOOL_CALLS_FINISH = "tool_calls"  # OpenAI's finish_reason for an answer that is tool calls


def openai_finish_reason(reason: FinishReason) -> str:
    # A cancelled request has no OpenAI name; whoever cancelled it is gone anyway.
    return "stop" if reason is FinishReason.CANCELLED else reason.value


class ChunkWriter:
    """Builds the chunks of one streamed chat completion, all sharing id and timestamp."""

    def __init__(self, model: str, kind: Literal["chat", "text"] = "chat", fingerprint: str | None = None,
                 stored: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.id = new_id("chatcmpl" if kind == "chat" else "cmpl")
        self.created = int(time.time())
        self.model = model
        self.fingerprint = fingerprint  # OpenAI's system_fingerprint: ModelInfo.fingerprint
        # A conversation turn's ids (StoredTurn.ids()), on the first and the finishing chunk:
        # a client that stops reading early still learns where its turn is kept.
        self.stored = stored or {}

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": self.fingerprint, "choices": choices, **extra}

    def _choice(self, delta: dict[str, Any], finish_reason: str | None,
                logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
        if self.kind == "chat":
            shaped = None if logprobs is None else chat_logprobs(logprobs)
            return {"index": 0, "delta": delta, "logprobs": shaped, "finish_reason": finish_reason}
        shaped = None if logprobs is None else completion_logprobs(logprobs)
        return {"index": 0, "text": delta.get("content", ""), "logprobs": shaped, "finish_reason": finish_reason}

    def role(self) -> dict[str, Any]:
        return self._chunk([self._choice({"role": "assistant", "content": ""}, None)], **self.stored)

    def content(self, text: str, logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
        """A piece of the answer; with logprobs asked for, those of the tokens it shows."""
        return self._chunk([self._choice({"content": text}, None, logprobs)])

    def tool_calls(self, calls: list[dict[str, Any]]) -> dict[str, Any]:
        indexed = [{"index": i, **call} for i, call in enumerate(calls)]
        return self._chunk([self._choice({"tool_calls": indexed}, None)])

    def finish(self, reason: str, timings: Timings) -> dict[str, Any]:
        return self._chunk([self._choice({}, reason)], timings=timings.as_dict(), **self.stored)

    def usage(self, usage: Usage) -> dict[str, Any]:
        return self._chunk([], usage=usage_dict(usage))
