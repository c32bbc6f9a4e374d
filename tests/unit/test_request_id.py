"""x-request-id on every response (answers, streams, the door's refusals, 404, 413, a crash's
500, a WebSocket's handshake), the client's own id kept when sane, and the log line that
names it; on the fake engine."""

from __future__ import annotations

import logging
import re
import socket

import pytest
from fastapi.testclient import TestClient

from fakes import LOCAL_URL, LOCAL_WS, fake_runtime
from jisu.server.access import AccessPolicy
from jisu.server.app import create_app
from live_server import serving_in_thread

KEY = "k-123"
GENERATED = re.compile(r"req_[0-9a-f]{24}")
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def app():
    with fake_runtime(parallel=1) as runtime:
        app = create_app(runtime, AccessPolicy.build({KEY: "alice"}, cors_origins=["https://app.example"]))

        @app.get("/crash", include_in_schema=False)
        async def crash():
            raise RuntimeError("a bug")

        yield app


@pytest.fixture
def client(app):
    with TestClient(app, base_url=LOCAL_URL, raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {KEY}"}) as test_client:
        yield test_client


def request_id(response) -> str:
    found = response.headers.get_list("x-request-id")
    assert len(found) == 1, (response.status_code, response.headers)
    return found[0]


@pytest.mark.parametrize("name,method,path,kwargs,status", [
    ("an answer", "POST", "/v1/chat/completions", {"json": CHAT}, 200),
    ("a stream", "POST", "/v1/chat/completions", {"json": {**CHAT, "stream": True}}, 200),
    ("an Ollama answer", "POST", "/api/chat", {"json": {"messages": CHAT["messages"], "stream": False}}, 200),
    ("the page", "GET", "/", {}, 200),
    ("bad input", "POST", "/v1/chat/completions", {"json": {}}, 400),
    ("no key", "GET", "/v1/models", {"headers": {"Authorization": ""}}, 401),
    ("a foreign Host", "GET", "/v1/models", {"headers": {"Host": "evil.example"}}, 403),
    ("a foreign Origin", "GET", "/v1/models", {"headers": {"Origin": "https://evil.example"}}, 403),
    ("a CORS preflight", "OPTIONS", "/v1/chat/completions",
     {"headers": {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}}, 204),
    ("an unknown path", "GET", "/nowhere", {}, 404),
    ("a body over the limit", "POST", "/v1/chat/completions",
     {"content": b"x", "headers": {"Content-Length": str(9 << 20)}}, 413),
    ("a crash", "GET", "/crash", {}, 500),
])
def test_every_response_has_a_request_id(client, name, method, path, kwargs, status):
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, (name, response.text)
    assert GENERATED.fullmatch(request_id(response)), name


def test_each_request_gets_its_own_id(client):
    ids = {request_id(client.get("/health")) for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("sent", ["abc-123", "0b9f6c1e-8d2a-4c47-9a51-3f0e2d7c6b14", "trace:1/2+3=4@x_y.z"])
def test_a_sane_client_id_is_kept(client, sent):
    assert request_id(client.get("/health", headers={"X-Request-Id": sent})) == sent
    refused = client.get("/v1/models", headers={"X-Request-Id": sent, "Authorization": ""})
    assert refused.status_code == 401 and request_id(refused) == sent, "the door's refusals keep it too"


@pytest.mark.parametrize("sent", ["", "x" * 129, "two words", 'quote"d', "new\\nline", "ünïcode"])
def test_an_id_unfit_for_a_log_line_is_replaced(client, sent):
    got = request_id(client.get("/health", headers={"X-Request-Id": sent.encode("utf-8")}))
    assert GENERATED.fullmatch(got), got


def test_a_listed_origin_may_read_the_id(client):
    response = client.get("/v1/models", headers={"Origin": "https://app.example"})
    assert response.headers["access-control-expose-headers"] == "x-request-id"


def test_the_log_line_names_request_status_and_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="jisu.access"):
        client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers={"X-Request-Id": "trace-42"})
        client.get("/nowhere")
    lines = [r.getMessage() for r in caplog.records if r.name == "jisu.access"]
    assert len(lines) == 2, lines
    assert '"POST /v1/chat/completions" 200' in lines[0] and lines[0].endswith(" trace-42")
    assert '"GET /nowhere" 404' in lines[1] and GENERATED.search(lines[1])


def test_websocket_handshake_has_an_id_and_a_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="jisu.access"):
        with client.websocket_connect(LOCAL_WS, headers={"X-Request-Id": "ws-7"}) as socket_session:
            socket_session.send_json({"type": "auth", "api_key": KEY})
            assert dict(socket_session.extra_headers)[b"x-request-id"] == b"ws-7"
    lines = [r.getMessage() for r in caplog.records if r.name == "jisu.access"]
    assert any('"WS /v1/ws" 101' in line and line.endswith(" ws-7") for line in lines), lines


def test_a_head_refused_below_asgi_has_an_id_too():
    """Too many headers never reach the app: uvicorn's connection answers 431 itself."""
    with fake_runtime(parallel=1) as runtime:
        with serving_in_thread(create_app(runtime)) as (url, _):
            host, port = url.removeprefix("http://").split(":")
            head = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
                f"X-Filler-{i}: x\r\n" for i in range(200)) + "\r\n"
            with socket.create_connection((host, int(port)), timeout=10) as conn:
                conn.sendall(head.encode())
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 431 " in status_line
    assert re.search(rb"\r?\nx-request-id: req_[0-9a-f]{24}\r\n", b"\r\n" + rest), answer[:400]
