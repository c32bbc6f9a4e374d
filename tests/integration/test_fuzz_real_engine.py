"""Schemathesis against the app on the real engine and model: inputs the fake engine cannot
judge (grammars from random schemas and tools, logit_bias, penalties, stop strings) must not
get a 5xx or crash the engine thread either."""

from __future__ import annotations

import schemathesis
from hypothesis import given

from fuzzing import call_bounded, fuzz_settings
from jisu.server.access import AccessPolicy
from jisu.server.app import create_app
from streams import scheduler_idle

EXAMPLES_PER_ROUTE = 25


def test_real_engine_answers_every_input_as_documented(runtime, tmp_path):
    # Schemathesis runs the app's lifespan, which opens the conversation store: a store of the
    # test's own, not the one in the model cache's JISU_HOME.
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(runtime, AccessPolicy.build(
        allowed_hosts=["testserver"]), history_path=tmp_path / "history.db"))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/models"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @fuzz_settings(EXAMPLES_PER_ROUTE)
        def answers_as_documented(case):
            call_bounded(case)
            assert runtime.alive, "the engine thread survived the input"

        answers_as_documented()
    assert scheduler_idle(runtime), runtime.stats()
