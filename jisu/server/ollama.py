"""Ollama's API beside OpenAI's, so apps with an Ollama provider work with `jisu serve --port 11434`.

- GET /api/version, GET and HEAD /api/tags, POST /api/show, GET /api/ps: the one served model.
- POST /api/chat and /api/generate: answers as NDJSON lines (or one object with stream:
  false), through the same Serving verbs as the OpenAI routes: refused (400, 503) before the
  first byte, cancelled when the client hangs up, `format` and `tools` by constrained decoding.
- Model management (pull, push, create, copy, delete, blobs) and embeddings: 501. A network
  client must never make the server fetch or write files, and jisu serves no embedding model.

Errors on these routes are Ollama's {"error": "message"} (jisu.server.errors reshapes them).
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from jisu.runtime import CacheOwner
from jisu.server.errors import OllamaErrorResponse, answer_cut_by_shutdown, error_responses
from jisu.server.ollama_protocol import (
    AnswerWriter,
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaShowRequest,
    ignored_options_header,
    model_entry,
    ollama_param,
    running_entry,
    show,
    version,
)
from jisu.server.serving import Answer, PreparedRequest, Serving
from jisu.structured.plan import plan_output
from jisu.structured.tool_calls import ToolCallStream, split_tool_calls
from jisu.types import EventReader, Failed, Finished, FinishReason, InvalidRequest, PrefillProgress, Queued, TextDelta

# Ollama reads a body as JSON whatever its Content-Type, and clients rely on it (LiteLLM's
# ollama_chat/ sends none). FastAPI's strict check guards against cross-site posts, which the
# Origin check (jisu.server.access) refuses on every route already.
router = APIRouter(tags=["Ollama"], strict_content_type=False)

NDJSON = "application/x-ndjson"
DOOR = (401, 403)  # every route, when keys are set or the Host/Origin is foreign
BODY = (400, 408, 413)  # every route that takes a JSON body
ANSWERED = {200: {"content": {NDJSON: {}, "application/json": {}},
                  "description": "The answer as NDJSON lines, the last with done: true; "
                                 "with stream: false one object"}}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return error_responses(*statuses, shape=OllamaErrorResponse)


def _serving(request: Request) -> Serving:
    return request.app.state.serving


# ---- the served model -------------------------------------------------------------------


@router.get("/api/version", responses=_errors(*DOOR))
async def ollama_version() -> dict[str, str]:
    """The level of Ollama's API answered here; `jisu` is jisu's own version."""
    return version()


@router.get("/api/tags", responses=_errors(*DOOR))
async def ollama_tags(request: Request) -> dict[str, Any]:
    """The one model jisu serves (it answers whichever name a request gives)."""
    return {"models": [model_entry(_serving(request).runtime.info)]}


@router.head("/api/tags", include_in_schema=False)
async def ollama_tags_head() -> Response:
    return Response(media_type="application/json")  # clients ask HEAD to see that the server is up


@router.post("/api/show", responses=_errors(*DOOR, *BODY))
async def ollama_show(body: OllamaShowRequest, request: Request) -> dict[str, Any]:
    """Details, capabilities, and the context length the model is served with."""
    return show(_serving(request).runtime.info)


@router.get("/api/ps", responses=_errors(*DOOR))
async def ollama_ps(request: Request) -> dict[str, Any]:
    return {"models": [running_entry(_serving(request).runtime.info)]}


# ---- answers ------------------------------------------------------------------------------


@router.post("/api/chat", responses={**ANSWERED, **_errors(*DOOR, *BODY, 503)})
async def ollama_chat(body: OllamaChatRequest, request: Request) -> Response:
    serving = _serving(request)
    writer = AnswerWriter(serving.runtime.info.id, "chat")
    headers = ignored_options_header(body.ignored_options())
    if not body.messages:
        return _single(writer.loaded(), body.streams, headers)

    def prepare() -> PreparedRequest:
        plan = plan_output(body.response_format(), body.tools, None)  # Ollama has no tool_choice
        messages = [message.chat_message() for message in body.messages]
        sampling = body.sampling_params(serving.runtime.info.context_size)
        return serving.prepare_conversation(messages, sampling, plan, "ollama_chat")

    return await _answer(request, _prepare(serving, prepare, "ollama_chat"), writer, body.streams, headers)


@router.post("/api/generate", responses={**ANSWERED, **_errors(*DOOR, *BODY, 503)})
async def ollama_generate(body: OllamaGenerateRequest, request: Request) -> Response:
    serving = _serving(request)
    writer = AnswerWriter(serving.runtime.info.id, "generate")
    headers = ignored_options_header(body.ignored_options())
    if not body.prompt and (body.raw or not body.system):  # raw mode has no system prompt
        return _single(writer.loaded(), body.streams, headers)

    def prepare() -> PreparedRequest:
        plan = plan_output(body.response_format(), None, None)
        sampling = body.sampling_params(serving.runtime.info.context_size)
        if body.raw:
            return serving.prepare_text(body.prompt, sampling, plan, "ollama_generate")
        return serving.prepare_conversation(body.chat_messages(), sampling, plan, "ollama_generate")

    return await _answer(request, _prepare(serving, prepare, "ollama_generate"), writer, body.streams, headers)


def _prepare(serving: Serving, prepare: Callable[[], PreparedRequest], endpoint: str) -> PreparedRequest:
    try:
        return prepare()
    except Exception as error:
        if isinstance(error, InvalidRequest) and ollama_param(error.param) != error.param:
            error = InvalidRequest(error.message, ollama_param(error.param), error.code)
        raise serving.refuse(endpoint, error) from None


async def _answer(request: Request, prepared: PreparedRequest, writer: AnswerWriter, stream: bool,
                  headers: dict[str, str]) -> Response:
    serving = _serving(request)
    # Admitted or refused (503) before any byte of the answer; from the user's cached state only.
    answer = serving.start(prepared, CacheOwner(request.state.user))
    if stream:
        lines = AnswerLines(writer, prepared.functions)
        return StreamingResponse(_ndjson(answer, lines), media_type=NDJSON,
                                 headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    whole = await answer.complete(request.is_disconnected)
    content, calls = split_tool_calls(whole.text, prepared.functions)
    logprobs = whole.logprobs if prepared.prompt.sampling.logprobs else None
    return JSONResponse(writer.whole(content or "", calls, whole.finished, logprobs), headers=headers)


def _single(body: dict[str, Any], stream: bool, headers: dict[str, str]) -> Response:
    if stream:
        return Response(_line(body), media_type=NDJSON, headers=headers)
    return JSONResponse(body, headers=headers)


def _line(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n"


class AnswerLines(EventReader[list[str]]):
    """The NDJSON lines each event becomes. Ollama has no line for waiting or reading the
    prompt (its clients would take one for an answer), so those pass silently. With tools,
    text is shown until a `<tool_call>` starts; the calls follow in one line once the answer
    has ended. An answer the server could not finish ends with an {"error"} line, which
    Ollama's clients raise."""

    def __init__(self, writer: AnswerWriter, functions: dict[str, dict[str, Any]]) -> None:
        self.writer = writer
        self.calls = ToolCallStream(functions) if functions else None

    def queued(self, event: Queued) -> list[str]:
        return []

    def progress(self, event: PrefillProgress) -> list[str]:
        return []

    def text(self, event: TextDelta) -> list[str]:
        shown = self.calls.feed(event.text) if self.calls else event.text
        return [_line(self.writer.piece(shown, event.logprobs))] if shown or event.logprobs else []

    def finished(self, event: Finished) -> list[str]:
        if event.reason is FinishReason.SHUTDOWN:
            return [_line({"error": answer_cut_by_shutdown().body["error"]["message"]})]
        lines = []
        if self.calls:
            rest, tool_calls = self.calls.finish()
            if rest:
                lines.append(_line(self.writer.piece(rest)))
            if tool_calls:
                lines.append(_line(self.writer.tool_calls(tool_calls)))
        lines.append(_line(self.writer.final(event)))
        return lines

    def failed(self, event: Failed) -> list[str]:
        return [_line({"error": event.message})]


async def _ndjson(answer: Answer, lines: AnswerLines) -> AsyncIterator[str]:
    async for event in answer.events():  # leaving early (client gone) cancels the answer
        for line in lines.read(event):
            yield line


# ---- what jisu does not do over the network ----------------------------------------------

_NO_MODEL_FILES = ("jisu serves the one model it was started with and never fetches, writes or deletes "
                   "model files for a network client; on the server run `jisu pull` and restart "
                   "`jisu serve --model ...`")
_NO_EMBEDDINGS = "jisu serves a chat model and has no embeddings"
NOT_IMPLEMENTED = [
    ("POST", "/api/pull", "pull", _NO_MODEL_FILES),
    ("POST", "/api/push", "push", _NO_MODEL_FILES),
    ("POST", "/api/create", "create", _NO_MODEL_FILES),
    ("POST", "/api/copy", "copy", _NO_MODEL_FILES),
    ("DELETE", "/api/delete", "delete", _NO_MODEL_FILES),
    ("POST", "/api/embed", "embed", _NO_EMBEDDINGS),
    ("POST", "/api/embeddings", "embeddings", _NO_EMBEDDINGS),
]


def _not_implemented(message: str) -> Callable[..., Any]:
    async def refuse(request: Request) -> JSONResponse:
        _serving(request).metrics.refused("not_implemented")
        return JSONResponse({"error": message}, status_code=501)

    return refuse


for _method, _path, _name, _message in NOT_IMPLEMENTED:
    router.add_api_route(_path, _not_implemented(_message), methods=[_method], name=f"ollama_{_name}",
                         summary=f"Ollama's {_path}: not implemented (501)", status_code=501,
                         responses=_errors(*DOOR, *((408, 413) if _method == "POST" else ()), 501))


@router.post("/api/blobs/{digest}", summary="Ollama's /api/blobs: not implemented (501)", status_code=501,
             responses=_errors(*DOOR, 408, 413, 501))
async def ollama_blobs(digest: str, request: Request) -> JSONResponse:
    """Uploads for /api/create, which jisu does not do either."""
    return await _not_implemented(_NO_MODEL_FILES)(request)
