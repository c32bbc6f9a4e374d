"""What the schemathesis runs share: the checks, the example budget, bounded work per case."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_TOKENS = 8  # bounded work per example: the run takes a fixed, short time


def not_a_server_error_but_not_implemented(ctx, response, case) -> bool | None:
    """No 5xx, except a 501 the route documents: the routes of Ollama's API jisu deliberately
    does not implement (pull, create, embed...) answer nothing else."""
    if response.status_code == 501 and "501" in case.operation.definition.raw.get("responses", {}):
        return None
    return not_a_server_error(ctx, response, case)


# No 5xx but the documented 503 and 501; status, content type and body as the schema says.
CHECKS = [not_a_server_error_but_not_implemented, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def fuzz_settings(examples_per_route: int):
    """A fixed budget and a fixed seed, so a CI run always does the same work."""
    return settings(max_examples=examples_per_route, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def call_bounded(case) -> None:
    """Call with at most MAX_TOKENS to generate (a value of the wrong type stays: it must get
    its 400), then validate the response. Ollama's routes take the limit as options.num_predict,
    where a negative number means no limit."""
    if isinstance(case.body, dict):
        for field in ("max_tokens", "max_completion_tokens"):
            value = case.body.get(field, MAX_TOKENS)
            if isinstance(value, int) and not isinstance(value, bool):
                case.body[field] = min(value, MAX_TOKENS)
        options = case.body.setdefault("options", {}) if case.path.startswith("/api/") else None
        if isinstance(options, dict):
            value = options.get("num_predict", MAX_TOKENS)
            if isinstance(value, int) and not isinstance(value, bool) and value != 0:
                options["num_predict"] = MAX_TOKENS if value < 0 else min(value, MAX_TOKENS)
    case.call_and_validate(checks=CHECKS)
