"""Chatting with the real model through the web UI: header, streaming, stop, edit, regenerate."""

from __future__ import annotations

import json
import re

import pytest
from uihelpers import (ask, configure, open_app, record_sent_frames, shot, stored_messages, wait_answer_done,
                       wait_model_fetched)

pytestmark = pytest.mark.browser


def test_header_shows_the_model_that_answers(new_page, server):
    page = new_page()
    open_app(page, server)
    model = server.models()["data"][0]
    name = page.get_by_test_id("model-name")
    assert name.inner_text() == model["name"], "the user must see which model answers"
    if model.get("quantization"):
        assert page.get_by_test_id("model-quant").inner_text() == model["quantization"]
    assert page.get_by_test_id("fallback-note").is_hidden(), "no stand-in notice when the server sets none"


STANDIN = {"fallback_note": "Using the stand-in model X: the default could not be fetched.",
           "fallback_detail": "Qwen2.5-0.5B-Instruct could not be fetched (no source reachable). Set HF_ENDPOINT "
                              "to a reachable mirror and run `jisu pull`."}
PHONE = {"width": 375, "height": 740}


def open_with_a_stand_in(page, server):
    """The page, told by /v1/models that a stand-in answers (the test model is no stand-in)."""
    def models_with_note(route):
        body = server.models()
        body["data"][0].update(STANDIN)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/v1/models", models_with_note)
    open_app(page, server)
    page.get_by_test_id("fallback-note").wait_for(state="visible")


def height(locator) -> float:
    return locator.bounding_box()["height"]


@pytest.mark.parametrize("locale,sentence", [
    ("zh-CN", "正在使用替补模型 {name}：默认模型无法下载。"),
    ("en-US", "Using the stand-in model {name}: the default could not be fetched."),
])
def test_fallback_note_is_one_line_on_a_phone_with_why_and_dismiss(new_page, server, locale, sentence):
    page = new_page(locale=locale, viewport=PHONE)
    open_with_a_stand_in(page, server)
    banner, text = page.get_by_test_id("fallback-note"), page.get_by_test_id("fallback-text")
    why, dismiss = page.get_by_test_id("fallback-why"), page.get_by_test_id("fallback-dismiss")
    assert text.get_attribute("title") == sentence.format(name=server.models()["data"][0]["name"])
    font_px = text.evaluate("el => parseFloat(getComputedStyle(el).fontSize)")
    assert height(text) < 2 * font_px and height(banner) <= 40, "one line on a phone, however long the name"
    for button in (why, dismiss):
        box = button.bounding_box()
        assert box["x"] + box["width"] <= PHONE["width"], "why? and dismiss stay on screen"
    shot(page, f"fallback-note-phone-{locale}")

    why.click()
    detail = page.get_by_test_id("fallback-detail")
    assert detail.is_visible() and detail.inner_text() == STANDIN["fallback_detail"]
    assert why.get_attribute("aria-expanded") == "true"
    shot(page, f"fallback-note-why-{locale}")
    why.click()
    assert detail.is_hidden()

    dismiss.click()
    assert banner.is_hidden()
    page.reload()
    wait_model_fetched(page)
    assert banner.is_hidden(), "dismissed for the rest of the session"


def test_chinese_question_streams_a_rendered_answer_with_stats(new_page, server):
    page = new_page(locale="zh-CN")
    open_app(page, server)
    configure(page, temperature=0, max_tokens=48)
    # Record every distinct text the streaming answer shows, to see it grow token by token.
    page.evaluate("""() => {
        window.__seen = new Set();
        new MutationObserver(() => {
            const body = document.querySelector('.msg.pending [data-testid=answer-body]');
            if (body && body.textContent) window.__seen.add(body.textContent);
        }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
    }""")
    ask(page, "用一句话介绍北京。")
    page.get_by_test_id("stop-button").wait_for(state="visible")
    wait_answer_done(page)

    answer = page.get_by_test_id("answer-body").last.inner_text().strip()
    assert answer, "the model's answer is shown"
    assert "\ufffd" not in answer, "a Chinese character split across tokens must never show as U+FFFD"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in answer), f"expected a Chinese answer, got {answer!r}"
    partials = page.evaluate("window.__seen.size")
    assert partials >= 2, "the answer should appear piece by piece while it streams, not all at once"

    stats = page.get_by_test_id("answer-stats").last.inner_text()
    assert "tokens/秒" in stats and "首字" in stats and "tokens" in stats, stats
    assert page.get_by_test_id("send-button").is_visible()
    assert page.get_by_test_id("user-text").last.inner_text() == "用一句话介绍北京。"
    shot(page, "answer-rendered")

    # The settings used for this answer survive a reload.
    page.reload()
    page.get_by_test_id("settings-button").click()
    assert page.get_by_test_id("setting-max-tokens").input_value() == "48"
    assert float(page.get_by_test_id("setting-temperature").input_value()) == 0


LONG_QUESTION = "请写一篇一千字的文章，介绍长城的历史、建筑特点和文化意义。"


def check_stopped_then_chat_goes_on(page, server, sent: list[dict]) -> dict:
    """After a stop: the answer ends marked as stopped by the server's own "done" (its stats carry
    the server's token count, which the page cannot make up), the composer is usable again, and
    the partial text is kept on screen, by the server (cut short) and as context for the next
    question, which the same socket answers. Returns the stored, stopped answer."""
    page.get_by_test_id("finish-cancelled").wait_for(timeout=30_000)
    assert page.get_by_test_id("send-button").is_visible() and page.get_by_test_id("stop-button").is_hidden(), \
        "a stopped answer gives the composer back"
    stats = page.get_by_test_id("answer-stats").last.inner_text()
    assert re.search(r"\d+ tokens", stats), f"the server's 'done' ended the answer, with its usage: {stats!r}"
    shown = page.get_by_test_id("answer-body").last.inner_text()
    stopped = stored_messages(server)[-1]
    assert stopped["role"] == "assistant" and stopped["finish_reason"] == "cancelled", stopped
    assert stopped["state"] == "cut_short", "the server keeps a stopped answer as cut short"
    if not stopped["content"]:
        assert shown == "（在输出任何内容前已停止）", "an answer stopped before its first token says so"

    configure(page, temperature=0, max_tokens=8)
    ask(page, "谢谢")
    wait_answer_done(page, count=2)
    # The next answer came over the same socket after the stopped one's last event: nothing
    # of the stopped answer can still arrive.
    assert page.get_by_test_id("message-assistant").count() == 2, "the stopped answer ended once"
    assert page.get_by_test_id("answer-body").first.inner_text() == shown, "nothing is added after stop"
    last_request = [f for f in sent if f.get("type") == "chat"][-1]
    assert last_request["messages"] == [{"role": "user", "content": "谢谢"}], "the server adds the history"
    assert last_request["parent_message_id"] == stopped["id"], "the next turn follows the stopped answer"
    assert [m["content"] for m in stored_messages(server)[:3]] == [LONG_QUESTION, stopped["content"], "谢谢"], \
        "the stopped answer's text stays in the history"
    return stopped


def test_stop_mid_answer_keeps_the_partial_answer(new_page, server):
    page = new_page(locale="zh-CN")
    sent = record_sent_frames(page)
    open_app(page, server)
    configure(page, temperature=0.7, max_tokens=1500)
    ask(page, LONG_QUESTION)
    page.wait_for_function(
        "() => (document.querySelector('.msg.pending [data-testid=answer-body]')?.textContent || '').length > 15",
        timeout=60_000)
    page.get_by_test_id("stop-button").click()

    stopped = check_stopped_then_chat_goes_on(page, server, sent)
    assert any(frame.get("type") == "cancel" for frame in sent), "stop must send {'type': 'cancel'}"
    assert len(stopped["content"]) > 15, "the partial answer is kept after stopping"


def test_stop_right_after_sending_is_not_lost(new_page, server):
    """The cancel leaves right behind the question, before the server can have started the
    answer (a cancel in that window used to be lost, and the page papered over it)."""
    page = new_page(locale="zh-CN")
    sent = record_sent_frames(page)
    open_app(page, server)
    configure(page, temperature=0.7, max_tokens=1500)
    # Click stop the moment it appears: in the same task that sent the question.
    page.evaluate("""() => {
        const stop = document.querySelector('[data-testid=stop-button]');
        new MutationObserver((_, observer) => {
            if (!stop.hidden) {
                observer.disconnect();
                stop.click();
            }
        }).observe(stop, {attributes: true, attributeFilter: ['hidden']});
    }""")
    ask(page, LONG_QUESTION)
    page.get_by_test_id("finish-cancelled").wait_for(timeout=30_000)
    kinds = [frame.get("type") for frame in sent]
    assert kinds[kinds.index("chat"):] == ["chat", "cancel"], f"the cancel went right after the question: {kinds}"

    check_stopped_then_chat_goes_on(page, server, sent)


def test_edit_a_previous_message_and_regenerate(new_page, server):
    page = new_page(locale="zh-CN")
    sent = record_sent_frames(page)
    open_app(page, server)
    configure(page, temperature=0, max_tokens=12)
    ask(page, "1+1等于几？只回答数字。")
    wait_answer_done(page, 1)
    ask(page, "再加1呢？只回答数字。")
    wait_answer_done(page, 2)
    assert page.get_by_test_id("message-user").count() == 2

    # Regenerate the last answer: the same question answered again, the new answer beside the old.
    question = stored_messages(server)[2]
    old_answer = page.get_by_test_id("answer-stats").last.element_handle()
    page.get_by_test_id("regenerate").click()
    page.wait_for_function("el => !el.isConnected", arg=old_answer)
    wait_answer_done(page, 2)
    chats = [f for f in sent if f.get("type") == "chat"]
    assert len(chats) == 3
    assert chats[2]["messages"] == [] and chats[2]["parent_message_id"] == question["id"], \
        "regenerate asks the server to answer the same question again"
    assert page.get_by_test_id("message-assistant").count() == 2
    assert page.get_by_test_id("message-assistant").last.get_by_test_id("branch-position").inner_text() == "2/2"

    # Edit the first question: a new branch from there, so the later turns are not on show.
    page.get_by_test_id("message-user").first.hover()
    page.get_by_test_id("edit-message").first.click()
    editor = page.get_by_test_id("edit-input")
    editor.fill("2+3等于几？只回答数字。")
    page.get_by_test_id("edit-save").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=message-user]').length === 1")
    wait_answer_done(page, 1)
    chats = [f for f in sent if f.get("type") == "chat"]
    assert len(chats) == 4
    assert chats[3]["messages"] == [{"role": "user", "content": "2+3等于几？只回答数字。"}]
    assert chats[3]["parent_message_id"] is None, "the edited first question is a new first message"
    assert page.get_by_test_id("user-text").inner_text() == "2+3等于几？只回答数字。"
    assert page.get_by_test_id("message-assistant").count() == 1
    assert page.get_by_test_id("message-user").get_by_test_id("branch-position").inner_text() == "2/2"
