"""Every failure leaves the server as JSON: OpenAI's shape {"error": {message, type, param, code}},
or on Ollama's routes (/api/...) Ollama's {"error": "message"}."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from jisu.history.errors import (
    ConversationNotFound, HistoryError, HistoryImportError, MessageNotFound, SchemaError, StoreClosed,
)
from jisu.types import ContextOverflow, Failed, InvalidRequest, QueueFull, SchedulerClosed

RETRY_AFTER_S = 2
UNSUPPORTED_PARAMETER = "unsupported_parameter"  # a validation error type of our own, and its code


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. context_length_exceeded adds token counts
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class OllamaErrorResponse(BaseModel):
    error: str


OLLAMA_PREFIX = "/api/"  # Ollama's routes: errors there take Ollama's shape


def speaks_ollama(path: str) -> bool:
    return path.startswith(OLLAMA_PREFIX)


def ollama_body(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-shaped error body in Ollama's shape: one string, which names the field
    when the message itself does not (Ollama's clients show only the string)."""
    error = body["error"]
    message, param = error["message"], error.get("param")
    if param and not error.get("code") and param not in message:
        message = f"{param}: {message}"
    return {"error": message}


def error_body_for(path: str, message: str, type_: str = "invalid_request_error", code: str | None = None
                   ) -> dict[str, Any]:
    """The body of an error refused at the door (keys, Host, Origin, body size) for this path."""
    body = error_body(message, type_, code=code)
    return ollama_body(body) if speaks_ollama(path) else body


def error_responses(*statuses: int, shape: type[BaseModel] = ErrorResponse) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the errors a route really returns (FastAPI's default 422 is
    never sent: see without_validation_422); Ollama's routes pass shape=OllamaErrorResponse."""
    described = {
        400: "Invalid request: `param` names the field",
        401: "Missing or wrong API key",
        403: "Host or Origin not allowed",
        404: "Not found: no such id for this user (another user's ids are unknown too), or browser mode "
             "is off",
        408: "The request body stalled",
        413: "Request body too large",
        501: "Not implemented by jisu (the message says why)",
        503: "Queue full or shutting down (see Retry-After)",
    }
    return {status: {"model": shape, "description": described[status]} for status in statuses}


def without_validation_422(app: FastAPI) -> None:
    """Drop the 422 responses FastAPI documents on every route with a body: invalid input
    gets 400 here, in OpenAI's error shape."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_, param, code)
        self.headers = headers


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


def answer_cut_by_shutdown() -> ApiError:
    """An answer the server stopped before its end (the SSE stream sends its body)."""
    return ApiError(503, "The server stopped before the answer was complete; retry.",
                    type_="server_error", code="server_shutdown")


def answer_failed(event: Failed) -> ApiError:
    """An answer the engine could not finish (a stream sends the body as its last event)."""
    return ApiError(500, event.message, type_="server_error", code=event.code)


def as_api_error(error: Exception) -> ApiError:
    """Map the errors the core raises to their HTTP form."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ContextOverflow):
        api = ApiError(400, error.message, param=error.param, code=error.code)
        api.body["error"].update(prompt_tokens=error.prompt_tokens, max_tokens=error.max_tokens,
                                 context_size=error.context_size)
        return api
    if isinstance(error, InvalidRequest):
        return ApiError(400, error.message, param=error.param, code=error.code)
    if isinstance(error, QueueFull):
        return ApiError(503, f"The server is busy ({error.waiting} requests waiting); retry shortly.",
                        type_="server_error", code="server_busy",
                        headers={"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(error, SchedulerClosed):
        return ApiError(503, "The server is shutting down.", type_="server_error", code="server_shutdown")
    if isinstance(error, ConversationNotFound):
        return ApiError(404, _sentence(error), code="conversation_not_found")
    if isinstance(error, MessageNotFound):
        return ApiError(404, _sentence(error), code="message_not_found")
    if isinstance(error, HistoryImportError):
        return ApiError(400, f"Cannot import this file: {error}", code="invalid_import")
    if isinstance(error, (StoreClosed, SchemaError)):
        return ApiError(503, f"Conversations are unavailable: {error}", type_="server_error",
                        code="history_unavailable")
    return ApiError(500, f"Internal error: {type(error).__name__}", type_="server_error")


def _sentence(error: Exception) -> str:
    """The conversation store's one-line messages ("no conversation 'conv_...'") as a sentence."""
    text = str(error)
    return text[:1].upper() + text[1:] + "."


_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _validation_param(location: tuple[Any, ...]) -> str | None:
    """('body', 'messages', 0, 'content', 'constrained-str') -> 'messages[0].content'; a query
    parameter or a path's part by its name.
    Pydantic puts union members, constraint kinds and model names in the location (they
    have dashes, brackets or capitals, or are type names); users know only field names."""
    parts: list[str | int] = []
    for part in location[1:] if location[:1] in (("body",), ("query",), ("path",)) else location:
        if isinstance(part, int):
            parts.append(part)
        elif _FIELD_NAME.fullmatch(str(part)) and part not in _TYPE_NAMES:
            parts.append(str(part))
        elif parts and str(part).isdigit():
            parts.append(str(part))  # a dictionary key: logit_bias's token id
    if not parts or isinstance(parts[0], int):
        return None
    text = str(parts[0])
    for part in parts[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def validation_error(error: RequestValidationError) -> ApiError:
    errors = error.errors() or [{"msg": "invalid request", "loc": ()}]
    # A value that fits no member of a union fails each; the deepest error is the one that
    # says what is wrong (an image part in content, not "content should be a string").
    first = max(errors, key=lambda e: len(_validation_param(tuple(e.get("loc", ()))) or ""))
    if first.get("type") == "json_invalid":
        return ApiError(400, "The request body is not valid JSON.", code="invalid_json")
    location = tuple(first.get("loc", ()))
    if location in ((), ("body",)) and first.get("type") in ("model_attributes_type", "dict_type", "model_type"):
        return ApiError(400, "The request body must be a JSON object, sent as Content-Type: application/json.",
                        code="invalid_json")
    param = _validation_param(location)
    if first.get("type") == "missing":
        return ApiError(400, f"Missing required field '{param}'.", param=param)
    if first.get("type") == "finite_number":
        return ApiError(400, f"Invalid '{param}': must be a finite number (not NaN or Infinity).", param=param)
    if first.get("type") == "extra_forbidden":  # OpenAI's words for a field it does not know
        return ApiError(400, f"Unrecognized request argument supplied: {param}",
                        param=param, code="unrecognized_request_argument")
    if first.get("type") == UNSUPPORTED_PARAMETER:  # a parameter jisu knows and cannot honour
        return ApiError(400, f"Unsupported parameter '{param}': {first.get('msg')}.", param=param,
                        code=UNSUPPORTED_PARAMETER)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return ApiError(400, f"Invalid '{param}': {message}." if param else message + ".", param=param)


def install_error_handlers(app: FastAPI) -> None:
    def respond(request: Request, api: ApiError) -> JSONResponse:
        body = ollama_body(api.body) if speaks_ollama(request.url.path) else api.body
        return JSONResponse(body, status_code=api.status, headers=api.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return respond(request, validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:  # FastAPI could not read the body (not UTF-8, say)
            return respond(request, ApiError(400, "The request body is not valid JSON (UTF-8 text).",
                                             code="invalid_json"))
        kind = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(error.status_code)
        return respond(request, ApiError(error.status_code, str(error.detail), code=kind))

    async def on_known(request: Request, error: Exception) -> JSONResponse:
        return respond(request, as_api_error(error))

    # Known errors get their own handlers: a handler for plain Exception runs only after
    # Starlette has treated the error as a crash.
    for kind in (ApiError, InvalidRequest, QueueFull, SchedulerClosed, HistoryError):
        app.add_exception_handler(kind, on_known)
    app.add_exception_handler(Exception, on_known)
