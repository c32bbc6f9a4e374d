"""Schemathesis fuzzes every route of the app's own OpenAPI schema (fake engine, in process):
no input gets a 5xx other than a documented 503 (or 501: the Ollama routes jisu does not
implement), and every response matches the schema
(status codes, content types, bodies). The same against the real model:
tests/integration/test_fuzz_real_engine.py."""

from __future__ import annotations

import pytest
import schemathesis

from fakes import FakeEngine, fake_runtime
from fuzzing import call_bounded, fuzz_settings
from jisu.server.access import AccessPolicy
from jisu.server.app import create_app

_runtime = fake_runtime(FakeEngine(), parallel=4, max_queue=64)
# The ASGI test client calls the server "testserver": a name it must be told about.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_runtime, AccessPolicy.build(
    allowed_hosts=["testserver"])))


@pytest.fixture(scope="module", autouse=True)
def close_runtime():
    yield
    _runtime.close()


@schema.parametrize()
@fuzz_settings(examples_per_route=60)
def test_api_answers_every_input_as_documented(case):
    call_bounded(case)
