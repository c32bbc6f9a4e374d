"""What the user sees when the server is unreachable, goes away mid-answer, is busy, or queues
the request. The socket is scripted (fakesocket.py); the page itself is the real one."""

from __future__ import annotations

import pytest
from fakesocket import FakeSocket
from uihelpers import ask, open_app, wait_answer_done

pytestmark = pytest.mark.browser


def test_unreachable_server_shows_banner_and_reconnects(new_page, server):
    page = new_page(locale="zh-CN")
    fake = FakeSocket(page, refuse_first=2)
    page.goto(server.url + "/")
    banner = page.get_by_test_id("connection-banner")
    banner.wait_for(state="visible")
    assert "无法连接到服务器" in banner.inner_text() or "正在连接" in banner.inner_text()
    assert page.get_by_test_id("send-button").is_disabled(), "nothing can be sent while disconnected"
    # The page keeps retrying by itself; "retry now" skips the wait.
    page.get_by_test_id("connection-retry").click()
    banner.wait_for(state="hidden", timeout=20_000)
    assert page.get_by_test_id("send-button").is_enabled()
    fake.on_chat = lambda fake, message: fake.answer("已恢复连接。")
    ask(page, "你好")
    wait_answer_done(page)
    assert page.get_by_test_id("answer-body").inner_text() == "已恢复连接。"


def test_connection_lost_mid_answer_keeps_partial_and_says_so(new_page, server):
    page = new_page(locale="en-US")
    fake = FakeSocket(page)

    def half_then_drop(fake, message):
        fake.send({"type": "token", "text": "The first half of"})
        fake.send({"type": "token", "text": " an answer"})
        fake.close()

    fake.on_chat = half_then_drop
    open_app(page, server)
    ask(page, "Tell me something.")
    page.get_by_test_id("finish-interrupted").wait_for()
    assert page.get_by_test_id("answer-body").inner_text() == "The first half of an answer"
    assert "connection to the server was lost" in page.get_by_test_id("chat-error").inner_text()
    assert page.get_by_test_id("send-button").is_visible(), "the UI is not stuck in 'generating'"
    # It reconnects by itself (about a second later) and the next question is answered.
    page.wait_for_selector("body[data-connected=true]", timeout=20_000)
    assert page.get_by_test_id("connection-banner").is_hidden()
    fake.on_chat = lambda fake, message: fake.answer("Back again.")
    page.get_by_test_id("regenerate").click()
    page.wait_for_function("() => document.querySelector('[data-testid=answer-body]')?.textContent.trim() === 'Back again.'")


def test_busy_server_says_so_and_retry_works(new_page, server):
    page = new_page(locale="zh-CN")
    fake = FakeSocket(page)
    fake.on_chat = lambda fake, message: fake.send({"type": "error", "status": 503, "error": {
        "message": "The server is busy (64 requests waiting); retry shortly.", "type": "server_error",
        "param": None, "code": "server_busy"}})
    open_app(page, server)
    ask(page, "你好")
    error = page.get_by_test_id("busy-error")
    error.wait_for()
    assert "服务器繁忙" in error.inner_text()
    assert page.get_by_test_id("message-assistant").count() == 0
    fake.on_chat = lambda fake, message: fake.answer("你好！")
    error.get_by_test_id("retry").click()
    wait_answer_done(page)
    assert page.get_by_test_id("busy-error").count() == 0
    assert len(fake.chats()) == 2 and fake.chats()[1]["messages"] == fake.chats()[0]["messages"]


def test_queue_position_and_prompt_progress_are_shown(new_page, server):
    page = new_page(locale="zh-CN")
    fake = FakeSocket(page)
    open_app(page, server)
    ask(page, "总结这篇长文。")
    page.wait_for_function("() => document.querySelector('.msg.pending')")
    status = page.get_by_test_id("answer-status")
    fake.send({"type": "queued", "position": 2})
    page.wait_for_function("() => document.querySelector('[data-testid=answer-status]')?.textContent.includes('前面还有 2 个')")
    fake.send({"type": "progress", "processed": 256, "total": 1024})
    page.get_by_test_id("prompt-progress").wait_for()
    assert page.get_by_test_id("prompt-progress").evaluate("el => el.value") == 0.25
    assert "256/1024" in status.inner_text()
    fake.answer("这是总结。", piece=2, completion_tokens=4)
    wait_answer_done(page)
    assert page.get_by_test_id("answer-status").count() == 0
    stats = page.get_by_test_id("answer-stats").inner_text()
    assert stats == "首字 0.12 秒 · 30.0 tokens/秒 · 4 tokens", stats


def test_switching_chats_mid_answer_leaves_the_new_chat_ready(new_page, server):
    """The answer is stopped by the switch and ends when the server confirms; the chat now on
    screen must then take a question (it used to stay in 'stopping', send button hidden)."""
    page = new_page(locale="en-US")
    fake = FakeSocket(page)
    fake.on_chat = lambda fake, message: fake.send({"type": "token", "text": "Half an answer"})
    open_app(page, server)
    ask(page, "Tell me something long.")
    page.get_by_text("Half an answer").wait_for()
    page.get_by_test_id("new-chat").click()
    for _ in range(200):  # Playwright delivers the page's frames while it waits
        if any(m.get("type") == "cancel" for m in fake.received):
            break
        page.wait_for_timeout(25)
    assert any(m.get("type") == "cancel" for m in fake.received), "switching chats stops the answer"
    fake.send({"type": "done", "finish_reason": "cancelled",
               "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
               "timings": {"time_to_first_token_ms": 120.0, "tokens_per_second": 30.0, "completion_tokens": 3}})
    page.get_by_test_id("send-button").wait_for(state="visible")
    page.get_by_test_id("empty-state").wait_for(state="visible")
    assert page.get_by_test_id("stop-button").is_hidden()
