"""OpenAI's `response_format` (text, json_object or json_schema), and telling the model the schema."""

from __future__ import annotations

import json
from typing import Any

from jisu.engine.grammar import schema_grammar
from jisu.engine.template import split_system
from jisu.types import ChatMessage, InvalidRequest


def read_response_format(response_format: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """(schema or None, whether JSON is required)."""
    if not response_format:
        return None, False
    kind = response_format.get("type")
    if kind == "text":
        return None, False
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise InvalidRequest("response_format.json_schema.schema must be a JSON schema object",
                                 "response_format.json_schema.schema")
        schema_grammar(spec["schema"])  # refuse what cannot be enforced, before generating
        return spec["schema"], True
    raise InvalidRequest(f"response_format.type must be text, json_object or json_schema, got {kind!r}",
                         "response_format.type")


def schema_instruction(schema: dict[str, Any]) -> str:
    return ("Respond only with a JSON object that follows this JSON schema:\n"
            + json.dumps(schema, ensure_ascii=False))


def with_schema_instruction(messages: list[ChatMessage], instruction: str | None) -> list[ChatMessage]:
    """Tell the model the schema it must follow; a 0.5B model fills fields far better when it
    can read their names and types, and the grammar alone only guarantees the shape."""
    if not instruction:
        return messages
    system, turns = split_system(messages)
    return [ChatMessage("system", f"{system}\n\n{instruction}"), *turns]
