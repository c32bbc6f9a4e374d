"""Reading what the server streams, and knowing when it has stopped working, the same way in
every test: SSE lines (OpenAI chunks), WebSocket events, and bounded waits for idleness.

Unit tests pass Starlette's in-process test socket and response; integration tests pass
httpx responses and `websockets` sockets of a live server. Both kinds work with the same
helpers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

import httpx

DONE = "[DONE]"
FINAL_WS_EVENTS = ("done", "error")  # the last message of every WebSocket answer


def sse_payload(line: str) -> dict | str | None:
    """The parsed payload of one `data:` line ("[DONE]" stays a string); None for any other line."""
    if not line.startswith("data: "):
        return None
    payload = line[len("data: "):]
    return payload if payload == DONE else json.loads(payload)


def sse_events(source: str | Iterable[str]) -> tuple[list[dict | str], list[str]]:
    """Data payloads and comment lines (": prefill 3/9"), each in order, from a whole body or
    from the lines of a streaming response."""
    lines = source.splitlines() if isinstance(source, str) else source
    data, comments = [], []
    for line in lines:
        payload = sse_payload(line)
        if payload is not None:
            data.append(payload)
        elif line.startswith(":"):
            comments.append(line)
    return data, comments


def chunk_content(chunk: dict | str) -> str:
    """The text a chat-completion chunk adds to the answer ("" for role, finish, usage, [DONE])."""
    if not isinstance(chunk, dict):
        return ""
    return "".join(choice.get("delta", {}).get("content") or "" for choice in chunk.get("choices", []))


def answer_text(chunks: Iterable[dict | str]) -> str:
    return "".join(chunk_content(chunk) for chunk in chunks)


def receive_event(socket, timeout: float = 60) -> dict:
    """The next WebSocket message, parsed."""
    if hasattr(socket, "receive_json"):  # the in-process test socket: it blocks without a timeout
        return socket.receive_json()
    return json.loads(socket.recv(timeout=timeout))


def receive_until(socket, types: Iterable[str] = FINAL_WS_EVENTS, timeout: float = 60) -> list[dict]:
    """Messages up to and including the first whose type is one of `types`."""
    wanted = tuple(types)
    events = [receive_event(socket, timeout)]
    while events[-1].get("type") not in wanted:
        events.append(receive_event(socket, timeout))
    return events


def ws_text(events: Iterable[dict]) -> str:
    return "".join(event["text"] for event in events if event.get("type") == "token")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10,
               describe: Callable[[], str] | None = None) -> None:
    """Poll until `condition()` holds; fail naming `what` did not happen. The bound only
    decides when to give up, never what passes: keep it generous."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s" + (f"\n{describe()}" if describe else ""))
        time.sleep(0.02)


def scheduler_idle(runtime) -> bool:
    stats = runtime.stats()
    return stats["running"] == 0 and stats["queued"] == 0


def wait_until_scheduler_idle(runtime, timeout: float = 10) -> None:
    wait_until(lambda: scheduler_idle(runtime), "the scheduler became idle", timeout,
               describe=lambda: str(runtime.stats()))


IDLE_GAUGES = ("jisu_requests_running", "jisu_requests_queued", "jisu_slots_in_use")


def server_idle(url: str, headers: dict | None = None) -> bool:
    """Nothing running, queued or holding an engine sequence, by the live server's /metrics."""
    metrics = httpx.get(f"{url}/metrics", headers=headers).text
    return all(f"{gauge} 0.0" in metrics.splitlines() for gauge in IDLE_GAUGES)


def wait_until_server_idle(url: str, timeout: float = 30, headers: dict | None = None) -> None:
    wait_until(lambda: server_idle(url, headers), "requests and slots were released", timeout,
               describe=lambda: httpx.get(f"{url}/metrics", headers=headers).text[-800:])
