"""Conversations kept in IndexedDB (sidebar: reload, open, rename, search, delete) and what
happens when a conversation outgrows the model's context."""

from __future__ import annotations

import time

import pytest
from uihelpers import ask, configure, open_app, put_conversation, record_sent_frames, shot, wait_answer_done, wait_ready

pytestmark = pytest.mark.browser


def stored(id_: str, title: str, turns: list[tuple[str, str]], system: str = "You are a helpful assistant.") -> dict:
    now = int(time.time() * 1000)
    messages = []
    for user, assistant in turns:
        messages.append({"role": "user", "content": user})
        if assistant is not None:
            messages.append({"role": "assistant", "content": assistant, "finish": "stop"})
    return {"id": id_, "title": title, "createdAt": now, "updatedAt": now, "role": "custom",
            "system": system, "messages": messages}


def items(page):
    return page.get_by_test_id("conversation-item")


def test_conversations_survive_reload_and_can_be_renamed_searched_deleted(new_page, server):
    page = new_page(locale="zh-CN")
    open_app(page, server)
    configure(page, temperature=0, max_tokens=16)
    ask(page, "用一句话介绍上海。")
    wait_answer_done(page)
    answer = page.get_by_test_id("answer-body").inner_text()
    # A second, older conversation to search among.
    put_conversation(page, stored("older", "Rust 所有权", [("Rust 的所有权是什么？", "所有权是 Rust 管理内存的方式。")]))

    page.reload()
    wait_ready(page)
    assert page.get_by_test_id("empty-state").is_visible(), "a reload starts on a new, empty chat"
    assert items(page).count() == 2
    first = items(page).filter(has_text="用一句话介绍上海")
    first.get_by_test_id("conversation-open").click()
    assert page.get_by_test_id("user-text").inner_text() == "用一句话介绍上海。"
    assert page.get_by_test_id("answer-body").inner_text() == answer
    assert page.get_by_test_id("answer-stats").is_visible(), "stats are stored with the answer"

    # Rename, and the new title is stored.
    first.hover()
    first.get_by_test_id("rename-conversation").click()
    page.get_by_test_id("rename-input").fill("上海简介")
    page.get_by_test_id("rename-input").press("Enter")
    items(page).filter(has_text="上海简介").wait_for()
    page.reload()
    wait_ready(page)
    assert items(page).filter(has_text="上海简介").count() == 1

    # Search matches titles and message text.
    search = page.get_by_test_id("search-input")
    search.fill("所有权")
    assert items(page).count() == 1 and "Rust" in items(page).inner_text()
    search.fill("上海")
    assert items(page).count() == 1 and "上海简介" in items(page).inner_text()
    search.fill("没有这个词 xyz")
    assert items(page).count() == 0
    assert page.get_by_test_id("conversation-empty").is_visible()
    search.fill("")
    assert items(page).count() == 2

    # Delete asks first: cancel keeps the conversation, OK removes the one asked about for good.
    # (A delete is asynchronous, so "cancel kept it" is checked after the OK'd delete, which
    # IndexedDB runs after anything the cancel might have started.)
    kept = items(page).filter(has_text="上海简介")
    kept.hover()
    kept.get_by_test_id("delete-conversation").click()
    page.get_by_test_id("confirm-cancel").click()
    deleted = items(page).filter(has_text="Rust")
    deleted.hover()
    deleted.get_by_test_id("delete-conversation").click()
    page.get_by_test_id("confirm-ok").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=conversation-item]').length === 1")
    page.reload()
    wait_ready(page)
    assert items(page).count() == 1
    assert "上海简介" in items(page).inner_text(), "cancel kept the conversation, OK deleted the other"


def test_context_overflow_offers_new_chat_or_visible_trimming(new_page, small_server):
    page = new_page(locale="en-US")
    sent = record_sent_frames(page)
    open_app(page, small_server)
    configure(page, temperature=0, max_tokens=24)
    filler = "The quick brown fox jumps over the lazy dog near the quiet river bank. " * 9  # ~150 tokens
    history = stored("long", "Long chat", [
        (f"FIRST question. {filler}", f"First answer. {filler}"),
        (f"SECOND question. {filler}", f"Second answer. {filler}"),
    ], system="SYSTEM PROMPT: answer briefly.")
    put_conversation(page, history)
    page.reload()
    wait_ready(page)
    page.get_by_test_id("conversation-open").click()
    ask(page, "Now say hello.")

    card = page.get_by_test_id("overflow-card")
    card.wait_for(timeout=30_000)
    text = card.get_by_test_id("overflow-text").inner_text()
    assert "512" in text, f"the message names the context size: {text}"
    assert card.get_by_test_id("overflow-new-chat").is_visible()
    assert card.get_by_test_id("overflow-trim").is_visible()
    shot(page, "context-overflow")

    # Option 1: a new chat, with the unsent question ready in the composer.
    card.get_by_test_id("overflow-new-chat").click()
    assert page.get_by_test_id("empty-state").is_visible()
    assert page.get_by_test_id("chat-input").input_value() == "Now say hello."
    page.get_by_test_id("chat-input").fill("")

    # Back to the long chat: the question has no answer yet; retrying overflows again.
    page.get_by_test_id("conversation-item").filter(has_text="Long chat").get_by_test_id("conversation-open").click()
    page.get_by_test_id("unanswered").get_by_test_id("retry").click()
    page.get_by_test_id("overflow-card").wait_for(timeout=30_000)

    # Option 2: trim. The oldest turn goes, visibly; the system prompt and the question stay.
    page.get_by_test_id("overflow-trim").click()
    notice = page.get_by_test_id("trim-notice")
    notice.wait_for()
    assert "FIRST question" in notice.inner_text(), "the notice lists what was dropped"
    wait_answer_done(page, count=2, timeout=60_000)  # the kept answer + the new one
    notice.scroll_into_view_if_needed()
    shot(page, "context-trimmed")
    assert page.get_by_test_id("overflow-card").count() == 0, "after trimming the request fits"
    last = [f for f in sent if f.get("type") == "chat"][-1]
    contents = [m["content"] for m in last["messages"]]
    assert last["messages"][0] == {"role": "system", "content": "SYSTEM PROMPT: answer briefly."}
    assert not any("FIRST" in c for c in contents), "the dropped turn is not sent"
    assert contents[-1] == "Now say hello."

    # The trimmed state is what is stored.
    page.reload()
    wait_ready(page)
    page.get_by_test_id("conversation-open").click()
    assert "FIRST question" in page.get_by_test_id("trim-notice").inner_text()
    assert page.get_by_test_id("message-user").count() == 2


def test_trim_plan_drops_whole_oldest_turns_only(new_page, server):
    """The estimate behind "trim oldest turns", checked in the browser on trim.js itself."""
    page = new_page()
    open_app(page, server)
    result = page.evaluate("""async () => {
        const {planTrim, applyTrim} = await import('/static/trim.js');
        const turn = (n) => [{role: 'user', content: `q${n} ` + 'x'.repeat(400)},
                             {role: 'assistant', content: `a${n} ` + 'y'.repeat(400)}];
        const messages = [...turn(1), ...turn(2), ...turn(3), {role: 'user', content: 'last'}];
        // ~100 tokens per message: 7 messages ≈ 700 prompt tokens; room for ~400.
        const plan = planTrim(messages, 'sys', {prompt_tokens: 700, max_tokens: 100, context_size: 512});
        const trimmed = applyTrim(messages, plan);
        const alone = planTrim([{role: 'user', content: 'z'.repeat(4000)}], 'sys',
                               {prompt_tokens: 1000, max_tokens: 100, context_size: 512});
        const again = applyTrim(trimmed, planTrim(trimmed, 'sys', {prompt_tokens: 600, max_tokens: 100, context_size: 512}));
        return {plan, kept: trimmed.slice(1).map(m => m.content.slice(0, 2)),
                dropped: trimmed[0].dropped.map(m => m.content.slice(0, 2)), alone,
                againDropped: again[0].dropped.map(m => m.content.slice(0, 2)), againKept: again.length - 1};
    }""")
    assert result["plan"]["tooLong"] is False
    assert result["dropped"] == ["q1", "a1", "q2", "a2"], "whole turns, oldest first"
    assert result["kept"] == ["q3", "a3", "la"], "the newest question always stays"
    assert result["alone"]["tooLong"] is True and result["alone"]["cut"] == 0, \
        "a single message that cannot fit is reported, not trimmed"
    assert result["againDropped"] == ["q1", "a1", "q2", "a2", "q3", "a3"], "a second trim lists everything dropped"
    assert result["againKept"] == 1
