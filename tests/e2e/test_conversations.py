"""Conversations in the sidebar (reload, open, rename, search, delete) and what happens when a
conversation outgrows the model's context. The page keeps them on the server: these run on
jisu's app with the fake engine (conftest.fake_server), whose store is the real one."""

from __future__ import annotations

import httpx
import pytest
from uihelpers import (ask, configure, keep_on_server, open_app, open_conversation, record_sent_frames, shot,
                       stored_messages, wait_answer_done, wait_ready)

pytestmark = pytest.mark.browser


def items(page):
    return page.get_by_test_id("conversation-item")


def wait_items(page, count: int) -> None:
    """The sidebar lists `count` conversations (a search is answered by the server)."""
    page.wait_for_function("n => document.querySelectorAll('[data-testid=conversation-item]').length === n", arg=count)


def test_conversations_survive_reload_and_can_be_renamed_searched_deleted(new_page, fake_server):
    server = fake_server()
    page = new_page(locale="zh-CN")
    open_app(page, server)
    ask(page, "用一句话介绍上海。")
    wait_answer_done(page)
    # A second, older conversation to search among, as another browser or the CLI left it.
    keep_on_server(server, "Rust 所有权", [{"role": "user", "content": "Rust 的所有权是什么？"},
                                          {"role": "assistant", "content": "所有权是 Rust 管理内存的方式。"}])

    page.reload()
    wait_ready(page)
    assert page.get_by_test_id("empty-state").is_visible(), "a reload starts on a new, empty chat"
    assert items(page).count() == 2
    open_conversation(page, "用一句话介绍上海")
    assert page.get_by_test_id("user-text").inner_text() == "用一句话介绍上海。"
    assert page.get_by_test_id("answer-body").inner_text() == "Hello from the fake model!"
    assert "tokens" in page.get_by_test_id("answer-stats").inner_text(), "stats are stored with the answer"

    # Rename, and the new title is kept.
    first = items(page).filter(has_text="用一句话介绍上海")
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
    page.wait_for_function("() => document.querySelector('[data-testid=conversation-snippet]')")
    assert items(page).count() == 1 and "Rust" in items(page).inner_text()
    search.fill("上海")
    page.wait_for_function("() => !document.querySelector('[data-testid=conversation-item]')?.textContent.includes('Rust')")
    assert items(page).count() == 1 and "上海简介" in items(page).inner_text()
    search.fill("没有这个词 xyz")
    wait_items(page, 0)
    assert page.get_by_test_id("conversation-empty").is_visible()
    search.fill("")
    wait_items(page, 2)

    # Delete asks first: cancel keeps the conversation, OK removes the one asked about for good.
    kept = items(page).filter(has_text="上海简介")
    kept.hover()
    kept.get_by_test_id("delete-conversation").click()
    page.get_by_test_id("confirm-cancel").click()
    deleted = items(page).filter(has_text="Rust")
    deleted.hover()
    deleted.get_by_test_id("delete-conversation").click()
    page.get_by_test_id("confirm-ok").click()
    wait_items(page, 1)
    page.reload()
    wait_ready(page)
    assert items(page).count() == 1
    assert "上海简介" in items(page).inner_text(), "cancel kept the conversation, OK deleted the other"
    assert [item["title"] for item in httpx.get(f"{server.url}/v1/conversations").json()["data"]] == ["上海简介"]


def test_context_overflow_offers_new_chat_or_visible_trimming(new_page, fake_server):
    server = fake_server(ctx_size=512)  # the fake model's tokens are bytes
    page = new_page(locale="en-US")
    sent = record_sent_frames(page)
    open_app(page, server)
    configure(page, temperature=0, max_tokens=24)
    filler = "The quick brown fox jumps over the lazy dog. " * 2  # ~90 tokens
    keep_on_server(server, "Long chat", [
        {"role": "user", "content": f"FIRST question. {filler}"}, {"role": "assistant", "content": f"First answer. {filler}"},
        {"role": "user", "content": f"SECOND question. {filler}"}, {"role": "assistant", "content": f"Second answer. {filler}"},
    ], system="SYSTEM PROMPT: answer briefly.")
    page.reload()
    wait_ready(page)
    open_conversation(page, "Long chat")
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

    # Back to the long chat: the server kept nothing of the refused turn; asking again overflows again.
    open_conversation(page, "Long chat")
    assert page.get_by_test_id("message-user").count() == 2
    ask(page, "Now say hello.")
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
    assert [f for f in sent if f.get("type") == "chat"][-1]["messages"] == [{"role": "user", "content": "Now say hello."}]
    # The model read the trimmed branch: the server keeps it beside the whole one.
    branch = stored_messages(server)
    assert [m["content"].split(".")[0] for m in branch[:3]] == ["SECOND question", "Second answer", "Now say hello"]
    assert not any("FIRST" in m["content"] for m in branch), "the dropped turn is not sent"
    assert branch[0]["siblings"]["count"] == 2

    # The trimmed branch is what is kept on show, and the whole one is a click away.
    page.reload()
    wait_ready(page)
    open_conversation(page, "Long chat")
    assert page.get_by_test_id("message-user").count() == 2
    assert page.get_by_test_id("user-text").first.inner_text().startswith("SECOND question")
    page.get_by_test_id("message-user").first.get_by_test_id("branch-prev").click()
    page.wait_for_function("() => document.querySelector('[data-testid=user-text]')?.textContent.startsWith('FIRST')")


def test_trim_plan_drops_whole_oldest_turns_only(new_page, fake_server):
    """The estimate behind "trim oldest turns", checked in the browser on trim.js itself."""
    page = new_page()
    open_app(page, fake_server())
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
