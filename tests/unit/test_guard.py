"""The door of a shared server, on the fake engine: keys on every route, Host and Origin checks
on HTTP and WebSocket, CORS only for listed origins, the page's security headers."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from fakes import LOCAL_URL, LOCAL_WS, fake_runtime
from jisu.server.access import AccessPolicy
from jisu.server.app import create_app
from streams import receive_until

KEY = "alice-key-123"
OPEN = {"/health", "/", "/static/app.js", "/web-config.json"}


@pytest.fixture
def app():
    with fake_runtime(parallel=2) as runtime:
        yield create_app(runtime, AccessPolicy.build({KEY: "alice"}, cors_origins=["https://app.example"]))


@pytest.fixture
def client(app):
    with TestClient(app, base_url=LOCAL_URL) as test_client:
        yield test_client


def flat_routes(routes) -> list:
    """Routes, with included routers opened up (FastAPI keeps them as one entry each)."""
    flat = []
    for route in routes:
        included = getattr(route, "original_router", None)  # routers are included without prefix
        flat.extend(flat_routes(included.routes) if included is not None else [route])
    return flat


def every_route(app) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route the app has, static files and docs included."""
    found = []
    for route in flat_routes(app.routes):
        if isinstance(route, (APIRoute, Route)):
            for method in sorted(route.methods - {"HEAD"}):
                found.append((method, route.path))
        elif isinstance(route, Mount):
            found.append(("GET", route.path + "/app.js"))
    return found


def test_the_matrix_covers_the_whole_api(app):
    routes = {path for _, path in every_route(app)}
    assert set(app.openapi()["paths"]) <= routes, "every documented route is in the auth matrix"
    assert {"/v1/chat/completions", "/metrics", "/docs", "/openapi.json", "/"} <= routes
    assert any(isinstance(r, WebSocketRoute) and r.path == "/v1/ws" for r in flat_routes(app.routes))


@pytest.mark.parametrize("credentials", ["none", "wrong", "right"])
def test_auth_matrix(app, client, credentials):
    headers = {"none": {}, "wrong": {"Authorization": "Bearer alice-key-124"},
               "right": {"Authorization": f"Bearer {KEY}"}}[credentials]
    for method, path in every_route(app):
        response = client.request(method, path, headers=headers, json={} if method == "POST" else None)
        if path in OPEN:
            assert response.status_code == 200, (method, path, response.text)
        elif credentials == "right":
            assert response.status_code not in (401, 403), (method, path, response.text)
        else:
            assert response.status_code == 401, (method, path, credentials, response.text)
            error = response.json()["error"]
            if path.startswith("/api/"):  # Ollama's routes answer in Ollama's shape: one string
                assert "API key" in error, (path, error)
            else:
                assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_metrics_count_refused_keys(client):
    client.get("/v1/models")
    client.get("/v1/models", headers={"Authorization": "Bearer nope-nope-nope"})
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'jisu_refusals_total{reason="invalid_api_key"} 2.0' in metrics


def chat_over(socket) -> dict:
    """Ask over an open socket; the answer's final event."""
    socket.send_json({"type": "chat", "messages": [{"role": "user", "content": "hi"}]})
    return receive_until(socket)[-1]


def test_websocket_key_in_the_first_message(client):
    with client.websocket_connect(LOCAL_WS) as socket:
        socket.send_json({"type": "auth", "api_key": KEY})
        assert socket.receive_json() == {"type": "ready", "user": "alice"}
        assert chat_over(socket)["type"] == "done"


@pytest.mark.parametrize("first", [{"type": "auth", "api_key": "wrong-key-000"},
                                   {"type": "chat", "messages": [{"role": "user", "content": "hi"}]},
                                   {"type": "auth"}])
def test_websocket_without_the_right_key_is_closed_4401(client, first):
    with client.websocket_connect(LOCAL_WS) as socket:
        socket.send_json(first)
        error = socket.receive_json()
        assert error["status"] == 401 and error["error"]["code"] == "invalid_api_key"
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 4401


def test_websocket_key_in_the_handshake(client):
    with client.websocket_connect(LOCAL_WS, subprotocols=["jisu", f"jisu-key.{KEY}"]) as socket:
        assert socket.accepted_subprotocol == "jisu"
        assert chat_over(socket)["type"] == "done"
    with client.websocket_connect(LOCAL_WS, headers={"Authorization": f"Bearer {KEY}"}) as socket:
        assert chat_over(socket)["type"] == "done"


def test_websocket_wrong_key_in_the_handshake_is_refused(client):
    with pytest.raises(WebSocketDenialResponse) as refused:
        with client.websocket_connect(LOCAL_WS, subprotocols=["jisu", "jisu-key.wrong-key-000"]):
            pass
    assert refused.value.status_code == 401


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io"])
def test_foreign_host_is_403_on_http_and_websocket(app, host):
    with TestClient(app, base_url=f"http://{host}") as client:
        for path in ("/health", "/", "/v1/models"):
            response = client.get(path, headers={"Authorization": f"Bearer {KEY}"})
            assert response.status_code == 403, path
            assert response.json()["error"]["code"] == "forbidden_host"
        with pytest.raises(WebSocketDenialResponse) as refused:
            with client.websocket_connect(f"ws://{host}/v1/ws"):
                pass
        assert refused.value.status_code == 403


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:9999", "null"])
def test_foreign_origin_is_403_on_http_and_websocket(client, origin):
    headers = {"Origin": origin, "Authorization": f"Bearer {KEY}"}
    response = client.post("/v1/chat/completions", headers=headers,
                           json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden_origin"
    assert "access-control-allow-origin" not in response.headers
    with pytest.raises(WebSocketDenialResponse) as refused:
        with client.websocket_connect(LOCAL_WS, headers={"Origin": origin}):
            pass
    assert refused.value.status_code == 403
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'jisu_refusals_total{reason="forbidden_origin"} 2.0' in metrics


def test_own_origin_is_allowed(client):
    response = client.get("/v1/models", headers={"Origin": "http://localhost:8080",
                                                  "Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers, "same origin needs no CORS"


def test_cors_only_for_listed_origins_and_never_star(client):
    preflight = client.options("/v1/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204, "a preflight carries no key and must not need one"
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    response = client.get("/v1/models", headers={"Origin": "https://app.example",
                                                  "Authorization": f"Bearer {KEY}"})
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["vary"] == "Origin"
    refused = client.options("/v1/chat/completions", headers={
        "Origin": "https://other.example", "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


def test_page_has_baseline_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").headers["content-security-policy"] == csp
    api = client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert api.headers["x-content-type-options"] == "nosniff"


def test_loopback_without_keys_stays_open():
    with fake_runtime() as runtime, TestClient(create_app(runtime), base_url=LOCAL_URL) as client:
        assert client.get("/v1/models").status_code == 200
        assert client.get("/metrics").status_code == 200
        with client.websocket_connect(LOCAL_WS) as socket:
            assert chat_over(socket)["type"] == "done"
