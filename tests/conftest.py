"""Shared fixtures. JISU_HOME points at a temp dir for every test unless a test needs the
real model cache (see tests/integration/conftest.py)."""

import os

import pytest


@pytest.fixture(autouse=True)
def isolated_jisu_home(tmp_path, monkeypatch, request):
    if request.node.get_closest_marker("model") or request.node.get_closest_marker("browser"):
        yield None  # these tests use the shared, already-fetched model cache
        return
    home = tmp_path / "jisu-home"
    monkeypatch.setenv("JISU_HOME", str(home))
    yield home
