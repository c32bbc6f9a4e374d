"""Page helpers shared by the browser tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json

import httpx

from live_server import ARTIFACTS


def open_app(page, server) -> None:
    page.goto(server.url + "/")
    wait_ready(page)


def wait_ready(page) -> None:
    page.wait_for_selector("body[data-ready=true][data-connected=true]", timeout=30_000)


def wait_model_fetched(page) -> None:
    """Wait until the header shows what /v1/models said (the model, or that none is known): by
    then the page has also asked for an access key if the server refused the one it has."""
    page.wait_for_function("() => !document.getElementById('model-name').hasAttribute('data-i18n')")


def configure(page, temperature: float | None = None, max_tokens: int | None = None) -> None:
    """Set sampling through the real settings dialog (values persist in localStorage)."""
    page.get_by_test_id("settings-button").click()
    dialog = page.get_by_test_id("settings-dialog")
    if temperature is not None:
        dialog.get_by_test_id("setting-temperature").fill(str(temperature))
    if max_tokens is not None:
        dialog.get_by_test_id("setting-max-tokens").fill(str(max_tokens))
    dialog.get_by_test_id("settings-close").click()
    page.wait_for_selector("[data-testid=settings-dialog]", state="hidden")


def ask(page, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("send-button").click()


def wait_answer_done(page, count: int = 1, timeout: float = 90_000) -> None:
    """Wait until `count` finished answers (with their stats line) are on screen."""
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=message-assistant]:not(.pending) [data-testid=answer-stats]').length >= n"
        " && !document.querySelector('.msg.pending')",
        arg=count, timeout=timeout)


def keep_on_server(server, title: str, messages: list[dict], system: str | None = None) -> str:
    """A conversation the server keeps, as another browser or the CLI leaves one: created, then
    its messages ({role, content}) added in order. Answers added so have no stats: no model
    wrote them here."""
    conversation_id = httpx.post(f"{server.url}/v1/conversations", json={"title": title, "system": system}).json()["id"]
    for message in messages:
        httpx.post(f"{server.url}/v1/conversations/{conversation_id}/messages",
                   json={"role": message["role"], "content": message["content"]}).raise_for_status()
    return conversation_id


def stored_messages(server) -> list[dict]:
    """The active branch of the conversation the server updated last."""
    [latest] = httpx.get(f"{server.url}/v1/conversations", params={"limit": 1}).json()["data"]
    return httpx.get(f"{server.url}/v1/conversations/{latest['id']}").json()["messages"]


def open_conversation(page, title: str | None = None) -> None:
    """Open a conversation from the sidebar (the first one, or the one titled `title`) and wait
    until it is on show: it is read from the server."""
    listed = page.get_by_test_id("conversation-item")
    item = listed.filter(has_text=title) if title else listed.first
    conversation_id = item.get_attribute("data-id")
    item.get_by_test_id("conversation-open").click()
    page.wait_for_function("id => document.querySelector('.conv-item.active')?.dataset.id === id"
                           " && document.querySelector('#messages > .msg')", arg=conversation_id)


def put_conversation(page, conversation: dict) -> None:
    """Store a conversation in this browser's IndexedDB, through the app's own store module (the
    real schema): what browser mode keeps, and what a page from before server history left."""
    page.evaluate("async (c) => { const store = await import('/static/store.js'); await store.putConversation(c); }",
                  conversation)


def record_sent_frames(page) -> list[dict]:
    """Every message the page sends over its WebSocket, decoded. Call before the page loads:
    the listener only sees sockets opened after it is registered."""
    return _record_frames(page, "framesent")


def record_received_frames(page) -> list[dict]:
    """Every message the server sends the page over its WebSocket, decoded (as record_sent_frames)."""
    return _record_frames(page, "framereceived")


def _record_frames(page, event: str) -> list[dict]:
    frames: list[dict] = []

    def on_socket(ws):
        def on_frame(payload):
            try:
                message = json.loads(payload)
            except (TypeError, ValueError):
                return
            frames.append(message)
        ws.on(event, on_frame)

    page.on("websocket", on_socket)
    return frames


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)
