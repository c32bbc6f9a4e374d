"""Integration fixtures: the real stand-in model through the real engine."""

from __future__ import annotations

import pytest

from jisu.config import EngineConfig


@pytest.fixture(scope="session")
def runtime(standin_model):
    """One loaded engine for the session: loading is cheap (mmap) but not free."""
    from jisu.runtime import Runtime

    config = EngineConfig(model_path=standin_model.path, ctx_size=4096, parallel=4)
    with Runtime.load(standin_model, config) as loaded:
        yield loaded
