"""A clean stop (the path SIGTERM takes, driven here through the same uvicorn server in a
thread): answers that can finish in the grace period finish, the others end with a final
event, and the server is gone soon after. The real signal and exit code: integration tests."""

from __future__ import annotations

import json
import threading

import httpx
from websockets.sync.client import connect as ws_connect

from fakes import FakeEngine, fake_runtime
from jisu.server.app import create_app
from live_server import serving_in_thread
from streams import DONE, receive_until, scheduler_idle, sse_payload

GRACE_S = 0.6


def stream_payloads(url: str, body: dict, into: list[dict | str], started: threading.Event) -> None:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        for line in response.iter_lines():
            payload = sse_payload(line)
            if payload is not None:
                into.append(payload)
                if len(into) >= 3:
                    started.set()


def test_running_answers_get_a_final_event_when_the_server_stops():
    engine = FakeEngine(step_delay_s=0.02)
    engine.answer = lambda prompt: "short" if "quick" in prompt else "word " * 2000
    with fake_runtime(engine, parallel=4) as runtime:
        app = create_app(runtime)
        with serving_in_thread(app, grace_s=GRACE_S) as (url, server):
            long_sse, short_sse = [], []
            long_started, short_started = threading.Event(), threading.Event()
            ask = lambda text: {"messages": [{"role": "user", "content": text}], "stream": True}  # noqa: E731
            threads = [threading.Thread(target=stream_payloads, args=(url, ask(text), into, started))
                       for text, into, started in (("long", long_sse, long_started),
                                                   ("quick", short_sse, short_started))]
            for thread in threads:
                thread.start()
            with ws_connect(url.replace("http", "ws") + "/v1/ws") as socket_:
                socket_.send(json.dumps({"type": "chat", "messages": [{"role": "user", "content": "long"}]}))
                receive_until(socket_, ("token",), timeout=10)
                assert long_started.wait(10)

                server.should_exit = True  # what uvicorn's SIGTERM handler does
                ws_events = receive_until(socket_, timeout=10)
                for thread in threads:
                    thread.join(timeout=10)
                assert not any(thread.is_alive() for thread in threads), "every stream ended at the stop"

    # The long answer (10,000 tokens) cannot finish in the grace period: it ends because of the stop.
    assert long_sse[-1] == DONE, "the stream ends properly, not mid-chunk"
    final = long_sse[-2]
    assert final["error"]["code"] == "server_shutdown", final
    assert ws_events[-1]["type"] == "done" and ws_events[-1]["finish_reason"] == "shutdown"
    assert ws_events[-1]["usage"]["completion_tokens"] > 0
    assert short_sse[-1] == DONE
    assert short_sse[-2]["choices"][0]["finish_reason"] == "stop", "a short answer finished"
    assert scheduler_idle(runtime), runtime.stats()


def test_requests_during_the_drain_are_refused_with_503():
    engine = FakeEngine(step_delay_s=0.02)
    engine.answer = lambda prompt: "word " * 2000
    with fake_runtime(engine) as runtime:
        app = create_app(runtime)
        serving = app.state.serving
        serving.draining = True
        with serving_in_thread(app) as (url, _):
            response = httpx.post(f"{url}/v1/chat/completions",
                                  json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
            metrics = httpx.get(f"{url}/metrics").text
            health = httpx.get(f"{url}/health")
    assert health.status_code == 503 and health.json()["status"] == "shutting_down"
    assert response.status_code == 503 and response.json()["error"]["code"] == "server_shutdown"
    assert 'jisu_refusals_total{reason="server_shutdown"} 1.0' in metrics
