"""/docs and /openapi.json: the page served from the package under a strict CSP, and a schema
that documents the errors each route really returns (never FastAPI's 422, which jisu never
sends); on the fake engine."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, fake_runtime
from jisu.server.access import AccessPolicy
from jisu.server.app import create_app
from jisu.server.guard import DOCS_CSP, is_open_path

BODY_METHODS = {"post", "put", "patch"}  # BodyLimit reads (and may refuse) every such body


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # A module's app outlives the per-test JISU_HOME: it gets a conversation store of its own.
    history = tmp_path_factory.mktemp("history") / "history.db"
    with fake_runtime(parallel=1) as runtime:
        yield create_app(runtime, history_path=history)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url=LOCAL_URL) as test_client:
        yield test_client


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_the_schema_never_mentions_422(app):
    schema = app.openapi()
    assert "422" not in str({p: {m: list(o["responses"]) for m, o in ms.items()} for p, ms in schema["paths"].items()})
    assert not {"HTTPValidationError", "ValidationError"} & set(schema["components"]["schemas"])


def test_every_route_documents_the_errors_it_can_really_get(app):
    missing = []
    for path, method, operation in operations(app.openapi()):
        documented = set(operation["responses"])
        expected = {"403"}  # Host and Origin are checked on every route
        if not is_open_path(path):
            expected.add("401")  # with keys, every route but the open ones needs one
        if method in BODY_METHODS:
            expected |= {"408", "413"}
        if "requestBody" in operation:
            expected.add("400")  # a body that is not what the route reads
        if expected - documented:
            missing.append(f"{method.upper()} {path}: {sorted(expected - documented)}")
    assert not missing, "routes that do not document errors they can return:\n" + "\n".join(missing)


def test_errors_are_documented_in_the_shape_of_their_api(app):
    """/api/... answers in Ollama's shape ({"error": "message"}), the rest in OpenAI's."""
    for path, method, operation in operations(app.openapi()):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            reference = response["content"]["application/json"]["schema"]["$ref"]
            shape = "OllamaErrorResponse" if path.startswith("/api/") else "ErrorResponse"
            assert reference.endswith(f"/{shape}"), (method, path, status, reference)


def test_the_documented_400_is_what_bad_input_gets(client):
    response = client.post("/tokenize", json={"content": 5})
    assert response.status_code == 400 and set(response.json()["error"]) >= {"message", "type", "param", "code"}


def test_docs_page_uses_only_its_own_files(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == DOCS_CSP
    assert "'unsafe-inline'" not in DOCS_CSP and "http" not in DOCS_CSP
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
    assert "<script>" not in response.text, "no inline script: the CSP would refuse it"
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200 and len(asset.content) > 100, source
        assert asset.headers["content-security-policy"] == DOCS_CSP


@pytest.mark.parametrize("name,kind", [("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css"),
                                       ("start.js", "text/javascript")])
def test_swagger_files_have_their_types(client, name, kind):
    assert client.get(f"/docs/assets/{name}").headers["content-type"].startswith(kind)


@pytest.mark.parametrize("name", ["redoc.standalone.js", "..%2F__init__.py", "core.py", "nothing.js"])
def test_nothing_else_of_the_package_is_served(client, name):
    response = client.get(f"/docs/assets/{name}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_docs_need_the_key_like_the_schema():
    with fake_runtime(parallel=1) as runtime:
        app = create_app(runtime, AccessPolicy.build({"k-123": "alice"}))
        with TestClient(app, base_url=LOCAL_URL) as client:
            for path in ("/docs", "/docs/assets/swagger-ui.css", "/openapi.json"):
                assert client.get(path).status_code == 401, path
                assert client.get(path, headers={"Authorization": "Bearer k-123"}).status_code == 200, path
