"""Grammars (GBNF) that constrain decoding: any JSON object, or JSON valid against a schema.

llama.cpp's grammar sampler masks every token that would break the grammar, so the output
parses by construction. Schemas are converted with llama-cpp-python's own converter; what it
cannot express is refused here, before any generation, with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from llama_cpp.llama_grammar import SchemaConverter

from jisu.types import InvalidRequest

MAX_SCHEMA_CHARS = 100_000
SAFE_JSON_CHAR = r'''char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'''


def schema_grammar(schema: Any, param: str = "response_format.json_schema.schema") -> str:
    """GBNF for JSON documents valid against `schema`; InvalidRequest if it cannot be done."""
    builder = GrammarBuilder()
    builder.add_schema(schema, "", param)  # the unnamed schema becomes the `root` rule
    return builder.build(None)


class GrammarBuilder:
    """Combines several schemas into one grammar (rules they share are written once)."""

    def __init__(self, property_order: tuple[str, ...] = ()) -> None:
        self._converter = SchemaConverter(prop_order={name: i for i, name in enumerate(property_order)},
                                          allow_fetch=False, dotall=False, raw_pattern=False)

    def add_schema(self, schema: Any, name: str, param: str) -> str:
        """Add rules for JSON valid against `schema`; returns the rule to refer to it by."""
        check_schema(schema, param)
        try:
            return self._converter.visit(self._converter.resolve_refs(schema, "request"), name)
        except (AssertionError, ValueError, KeyError, TypeError, IndexError, RecursionError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InvalidRequest(f"unsupported JSON schema: {reason}", param) from None

    def build(self, root_rule: str | None) -> str:
        """The grammar text; `root_rule` is an extra `root ::= ...` line, if one is needed."""
        lines = self._converter.format_grammar().splitlines()
        # The converter's string characters admit raw control characters (a newline inside a
        # string), which JSON parsers reject; allow them only escaped.
        lines = [SAFE_JSON_CHAR if line.startswith("char ::=") else line for line in lines]
        if root_rule:
            lines.append(root_rule)
        return "\n".join(lines) + "\n"


def check_schema(schema: Any, param: str) -> None:
    if not isinstance(schema, dict):
        raise InvalidRequest("the JSON schema must be an object", param)
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise InvalidRequest(f"the JSON schema is larger than {MAX_SCHEMA_CHARS} characters", param)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "/".join(str(p) for p in error.path) or "(root)"
        raise InvalidRequest(f"invalid JSON schema at {where}: {error.message}", param) from None
