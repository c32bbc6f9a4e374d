"""The page on a server keeps its chats there (issue 15): what the page does shows up in the
server's /v1/conversations (what `jisu history` reads) and what the API or the CLI did shows up
in the page; edits and answers given again are branches ("‹ 1/2 ›"); an answer left by a
reload is kept, cut short; search, export and import; moving the browser's old IndexedDB
chats to the server, once.

The server is jisu's app on the fake engine (conftest.fake_server): the real page, socket and
conversation store, without the model's CPU; answers are scripted.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_attachments import DEBOUNCE_JS, drop, wait_chips_counted
from uihelpers import (ask, open_app, open_conversation, put_conversation, record_sent_frames, shot, wait_answer_done,
                       wait_ready)

pytestmark = pytest.mark.browser

CHATGPT_EXPORT = Path(__file__).parents[1] / "unit" / "data" / "chatgpt_conversations.json"
PHONE = {"width": 375, "height": 740}


def numbered():
    """Answers "Answer 1.", "Answer 2.", …: which answer is on show says which branch is."""
    count = itertools.count(1)
    return lambda prompt: f"Answer {next(count)}."


def listed(server, **params) -> list[dict]:
    return httpx.get(f"{server.url}/v1/conversations", params=params).json()["data"]


def stored(server, conversation_id: str) -> dict:
    return httpx.get(f"{server.url}/v1/conversations/{conversation_id}").json()


def made_through_the_api(server, title: str, questions: list[str]) -> str:
    """A conversation as the CLI makes one: created, then each question a chat completion with
    conversation_id, which the server answers and keeps."""
    conversation_id = httpx.post(f"{server.url}/v1/conversations", json={"title": title}).json()["id"]
    for question in questions:
        response = httpx.post(f"{server.url}/v1/chat/completions", json={
            "conversation_id": conversation_id, "messages": [{"role": "user", "content": question}]})
        response.raise_for_status()
    return conversation_id


def items(page):
    return page.get_by_test_id("conversation-item")


def browser_records(page) -> list[dict]:
    return page.evaluate("async () => (await import('/static/store.js')).listConversations()")


def test_a_chat_made_in_the_page_is_kept_by_the_server(new_page, fake_server):
    server = fake_server()
    page = new_page(locale="zh-CN")
    sent = record_sent_frames(page)
    open_app(page, server)
    ask(page, "用一句话介绍北京。")
    wait_answer_done(page)
    ask(page, "再说说上海。")
    wait_answer_done(page, count=2)

    [summary] = listed(server)
    assert summary["title"] == "用一句话介绍北京。", "the first question names the chat"
    messages = stored(server, summary["id"])["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "用一句话介绍北京。"), ("assistant", "Hello from the fake model!"),
        ("user", "再说说上海。"), ("assistant", "Hello from the fake model!")]
    assert messages[-1]["state"] == "complete" and messages[-1]["tokens_per_s"] > 0, "the server recorded the answer"
    chats = [frame for frame in sent if frame.get("type") == "chat"]
    assert chats[1]["conversation_id"] == summary["id"]
    assert chats[1]["messages"] == [{"role": "user", "content": "再说说上海。"}], \
        "only the new message goes: the server puts the history in front"
    assert chats[1]["parent_message_id"] == messages[1]["id"]
    assert browser_records(page) == [], "a page on a server keeps nothing in IndexedDB"

    # After a reload the chat comes back from the server, with the stats it stored.
    page.reload()
    wait_ready(page)
    open_conversation(page, "用一句话介绍北京")
    assert page.get_by_test_id("user-text").all_inner_texts() == ["用一句话介绍北京。", "再说说上海。"]
    stats = page.get_by_test_id("answer-stats").last.inner_text()
    assert "首字" in stats and "tokens/秒" in stats and "26 tokens" in stats, stats


def jisu(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "jisu.cli", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_page_and_the_cli_share_one_history(new_page, fake_server):
    """`jisu history` lists a chat made in the page, `jisu ask -c` goes on with it, and the page
    shows that turn after a reload (the CLI reaches the store through the server: --url)."""
    server = fake_server()
    page = new_page(locale="en-US")
    open_app(page, server)
    ask(page, "A question about llamas")
    wait_answer_done(page)
    assert "A question about llamas" in jisu("history", "--url", server.url)
    jisu("ask", "--url", server.url, "-c", "And about alpacas?")
    page.reload()
    wait_ready(page)
    open_conversation(page, "A question about llamas")
    assert page.get_by_test_id("user-text").all_inner_texts() == ["A question about llamas", "And about alpacas?"]
    assert page.get_by_test_id("answer-body").last.inner_text() == "Hello from the fake model!"


def test_a_conversation_made_through_the_api_shows_in_the_page_after_reload(new_page, fake_server):
    server = fake_server()
    page = new_page(locale="en-US")
    open_app(page, server)
    made_through_the_api(server, "Made in the terminal", ["First question", "Second question"])
    page.reload()
    wait_ready(page)
    open_conversation(page, "Made in the terminal")
    assert page.get_by_test_id("user-text").all_inner_texts() == ["First question", "Second question"]
    assert page.get_by_test_id("answer-body").all_inner_texts() == ["Hello from the fake model!"] * 2
    stats = page.get_by_test_id("answer-stats").last.inner_text()
    assert "first token" in stats and "tokens/s" in stats and "26 tokens" in stats, \
        f"the stats the server stored show as a live answer's do: {stats!r}"

    # The next turn in the page continues the same conversation on the server.
    ask(page, "Third question")
    wait_answer_done(page, count=3)
    [summary] = listed(server)
    assert [m["content"] for m in stored(server, summary["id"])["messages"] if m["role"] == "user"] == [
        "First question", "Second question", "Third question"]


def test_an_edit_makes_a_branch_that_is_kept_and_switchable(new_page, fake_server):
    server = fake_server(answer=numbered())
    page = new_page(locale="en-US")
    sent = record_sent_frames(page)
    open_app(page, server)
    ask(page, "Name a fruit.")
    wait_answer_done(page)
    ask(page, "Another one.")
    wait_answer_done(page, count=2)

    # Edit the first question: a new branch from there, the old one kept beside it.
    page.get_by_test_id("message-user").first.hover()
    page.get_by_test_id("edit-message").first.click()
    page.get_by_test_id("edit-input").fill("Name a vegetable.")
    page.get_by_test_id("edit-save").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=message-user]').length === 1"
                           " && document.querySelector('[data-testid=branch-position]')")
    wait_answer_done(page)
    edit = [frame for frame in sent if frame.get("type") == "chat"][-1]
    assert edit["parent_message_id"] is None and edit["messages"][0]["content"] == "Name a vegetable.", \
        "an edit of the first message is a new first message"
    user = page.get_by_test_id("message-user")
    assert user.get_by_test_id("branch-position").inner_text() == "2/2"
    assert page.get_by_test_id("answer-body").inner_text() == "Answer 3."
    page.mouse.move(5, 700)
    assert user.locator(".msg-actions").evaluate("el => getComputedStyle(el).opacity") == "1", \
        "other versions are shown without hovering over the message"
    shot(page, "branch-2-of-2")

    # ‹ shows the first branch with both of its turns; the server keeps the choice.
    user.get_by_test_id("branch-prev").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=message-user]').length === 2")
    assert page.get_by_test_id("user-text").all_inner_texts() == ["Name a fruit.", "Another one."]
    assert page.get_by_test_id("answer-body").all_inner_texts() == ["Answer 1.", "Answer 2."]
    assert page.get_by_test_id("branch-position").first.inner_text() == "1/2"
    assert page.get_by_test_id("branch-prev").first.is_disabled(), "no branch before the first"

    # What the model is given next is the branch on show.
    ask(page, "And a third?")
    wait_answer_done(page, count=3)
    [summary] = listed(server)
    branch = stored(server, summary["id"])["messages"]
    assert [m["content"] for m in branch] == ["Name a fruit.", "Answer 1.", "Another one.", "Answer 2.",
                                              "And a third?", "Answer 4."]

    # Regenerate: a second answer beside the last one.
    page.get_by_test_id("regenerate").click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=answer-body]')].at(-1)"
                           "?.textContent.trim() === 'Answer 5.' && !document.querySelector('.msg.pending')")
    last = page.get_by_test_id("message-assistant").last
    last.get_by_test_id("branch-position").wait_for()
    assert last.get_by_test_id("branch-position").inner_text() == "2/2"

    # After a reload: the branch last on show, and the other one a click away.
    page.reload()
    wait_ready(page)
    open_conversation(page, "Name a fruit.")
    assert page.get_by_test_id("answer-body").last.inner_text() == "Answer 5."
    page.get_by_test_id("message-user").first.get_by_test_id("branch-next").click()
    page.wait_for_function("() => document.querySelector('[data-testid=user-text]')?.textContent === 'Name a vegetable.'")
    assert page.get_by_test_id("answer-body").all_inner_texts() == ["Answer 3."]


def test_a_reload_mid_answer_shows_what_was_written_cut_short(new_page, fake_server):
    server = fake_server(answer=lambda prompt: "word " * 400, step_delay_s=0.02)
    page = new_page(locale="en-US")
    open_app(page, server)
    ask(page, "Say many words.")
    page.wait_for_function("() => (document.querySelector('.msg.pending [data-testid=answer-body]')?.textContent"
                           " || '').length > 30")
    page.reload()
    wait_ready(page)
    open_conversation(page, "Say many words.")
    answer = page.locator("[data-testid=message-assistant][data-cut-short=true]")
    answer.wait_for()
    written = answer.get_by_test_id("answer-body").inner_text()
    assert written.startswith("word word") and len(written) < len("word " * 400), written[:80]
    assert "cut short" in answer.get_by_test_id("answer-stats").inner_text()
    [summary] = listed(server)
    kept = stored(server, summary["id"])["messages"][-1]
    assert kept["state"] == "cut_short" and kept["content"].startswith(written.strip()[:30])


def test_search_finds_a_chinese_word_mid_sentence_and_opens_its_branch(new_page, fake_server):
    server = fake_server()
    page = new_page(locale="zh-CN")
    open_app(page, server)
    trip = made_through_the_api(server, "旅行", ["我们明天去北京的故宫博物院参观，要带什么？"])
    # Then an edit of that question: the 故宫 message is on the branch no longer on show.
    httpx.post(f"{server.url}/v1/conversations/{trip}/messages",
               json={"role": "user", "content": "换个话题：上海有什么好吃的？", "parent_id": None}).raise_for_status()
    made_through_the_api(server, "做饺子", ["饺子馅怎么调？"])
    page.reload()
    wait_ready(page)
    assert items(page).count() == 2

    page.get_by_test_id("search-input").fill("故宫")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=conversation-item]').length === 1")
    assert "旅行" in items(page).inner_text()
    snippet = page.get_by_test_id("conversation-snippet").inner_text()
    assert "故宫" in snippet, snippet
    items(page).get_by_test_id("conversation-open").click()
    hit = page.locator("[data-testid=message-user][data-hit=true]")
    hit.wait_for()
    assert "故宫" in hit.get_by_test_id("user-text").inner_text(), "the branch with the hit is on show"
    assert hit.get_by_test_id("branch-position").inner_text() == "1/2"

    page.get_by_test_id("search-input").fill("不存在的词")
    page.get_by_test_id("conversation-empty").wait_for()
    assert page.get_by_test_id("conversation-empty").inner_text() == "没有匹配的对话"
    page.get_by_test_id("search-input").fill("")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=conversation-item]').length === 2")


def test_a_long_history_is_listed_a_page_at_a_time(new_page, fake_server):
    server = fake_server()
    with httpx.Client(base_url=server.url) as client:
        for number in range(105):
            client.post("/v1/conversations", json={"title": f"chat {number}"}).raise_for_status()
    page = new_page(locale="en-US")
    open_app(page, server)
    assert items(page).count() == 100, "the server's largest page"
    assert items(page).first.inner_text() == "chat 104", "the most recently updated first"
    page.get_by_test_id("conversation-more").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=conversation-item]').length === 105")
    assert items(page).last.inner_text() == "chat 0"
    assert page.get_by_test_id("conversation-more").is_hidden()


def test_a_dropped_js_file_is_kept_as_part_of_the_message(new_page, fake_server):
    read = []
    server = fake_server(answer=lambda prompt: read.append(prompt) or "Here it is in TypeScript.")
    page = new_page(locale="zh-CN")
    open_app(page, server)
    drop(page, ("debounce.js", DEBOUNCE_JS.encode()))
    wait_chips_counted(page, 1)
    question = "把这段代码改写成 TypeScript。"
    ask(page, question)
    wait_answer_done(page)
    block = f"File: debounce.js\n```javascript\n{DEBOUNCE_JS.rstrip()}\n```"
    [summary] = listed(server)
    kept = stored(server, summary["id"])["messages"][0]
    assert kept["content"] == f"{block}\n\n{question}", "the server keeps what the model read"
    assert "clearTimeout(timer)" in read[-1], "the file reached the model"

    # Read back from the server, the file is a chip again and the bubble holds the question.
    page.reload()
    wait_ready(page)
    open_conversation(page, question)
    message = page.get_by_test_id("message-user")
    assert message.get_by_test_id("attachment-name").inner_text() == "debounce.js"
    assert message.get_by_test_id("user-text").inner_text() == question
    assert "clearTimeout" not in message.inner_text()

    # An edit sends the file again with the new text.
    message.hover()
    page.get_by_test_id("edit-message").click()
    page.get_by_test_id("edit-input").fill("解释这段代码。")
    page.get_by_test_id("edit-save").click()
    page.wait_for_function("() => document.querySelector('[data-testid=user-text]')?.textContent === '解释这段代码。'"
                           " && !document.querySelector('.msg.pending')")
    wait_answer_done(page)
    assert stored(server, summary["id"])["messages"][0]["content"] == f"{block}\n\n解释这段代码。"


def test_import_a_chatgpt_export_and_export_through_the_page(new_page, fake_server, tmp_path):
    server = fake_server()
    page = new_page(locale="en-US")
    open_app(page, server)
    page.get_by_test_id("settings-button").click()
    dialog = page.get_by_test_id("settings-dialog")
    assert "kept on the server" in dialog.get_by_test_id("history-where").inner_text()
    status = dialog.get_by_test_id("history-status")

    # A file that is no export: the reason, and nothing imported.
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": "world"}')
    dialog.get_by_test_id("import-input").set_input_files(str(bad))
    page.wait_for_function("() => document.querySelector('[data-testid=history-status]')?.dataset.kind === 'error'")
    refusal = status.inner_text()
    assert refusal.startswith("Could not import “notes.json”: ") and "not a jisu export or a ChatGPT" in refusal, refusal
    assert listed(server) == []

    dialog.get_by_test_id("import-input").set_input_files(str(CHATGPT_EXPORT))
    page.wait_for_function("() => document.querySelector('[data-testid=history-status]')?.dataset.kind === 'ok'")
    assert status.inner_text() == "Imported 2 chat(s); 0 already here, skipped."
    dialog.get_by_test_id("import-input").set_input_files(str(CHATGPT_EXPORT))
    page.wait_for_function("() => document.querySelector('[data-testid=history-status]')"
                           "?.textContent.startsWith('Imported 0')")
    assert len(listed(server)) == 2, "importing the same file again adds nothing"
    dialog.get_by_test_id("settings-close").click()

    items(page).filter(has_text="Weekend in Kyoto").wait_for()
    open_conversation(page, "Weekend in Kyoto")
    assert page.get_by_test_id("user-text").inner_text() == "Plan two days in Kyoto for me, on a small budget."
    assert page.get_by_test_id("branch-position").inner_text() == "2/2", "ChatGPT's edit is a branch here too"
    page.get_by_test_id("branch-prev").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=message-user]').length === 2")

    # Export: everything as jisu's JSON, the chat on screen as Markdown.
    page.get_by_test_id("settings-button").click()
    with page.expect_download() as everything:
        dialog.get_by_test_id("export-all").click()
    document = json.loads(Path(everything.value.path()).read_text())
    assert document["format"] == "jisu.conversations" and len(document["conversations"]) == 2
    with page.expect_download() as one:
        dialog.get_by_test_id("export-md").click()
    assert one.value.suggested_filename.endswith(".md")
    markdown = Path(one.value.path()).read_text()
    assert markdown.startswith("# Weekend in Kyoto") and "Plan two days in Kyoto for me." in markdown


LEGACY = [
    {"id": "old-1", "title": "旧对话：长城", "createdAt": 1_700_000_000_000, "updatedAt": 1_700_000_100_000,
     "role": "custom", "system": "Be brief.",
     "messages": [{"role": "user", "content": "长城有多长？"},
                  {"role": "assistant", "content": "大约两万公里。", "finish": "stop",
                   "usage": {"prompt_tokens": 20, "completion_tokens": 8},
                   "timings": {"time_to_first_token_ms": 150.0, "tokens_per_second": 31.5, "completion_tokens": 8}}]},
    {"id": "old-2", "title": "Old chat with a file", "createdAt": 1_700_000_200_000, "updatedAt": 1_700_000_300_000,
     "role": "general", "system": "",
     "messages": [{"role": "user", "content": "What does it do?", "attachments": [
                      {"name": "a.js", "size": 12, "lang": "javascript", "text": "let a = 1;\n", "tokens": 9}]},
                  {"role": "assistant", "content": "It sets a", "finish": "cancelled"}]},
]


def seed_browser(page, server) -> None:
    """The browser's IndexedDB as a page from before server history left it."""
    open_app(page, server)
    for record in LEGACY:
        put_conversation(page, record)
    page.reload()
    wait_ready(page)


def test_chats_in_indexeddb_move_to_the_server_once(new_page, fake_server):
    server = fake_server()
    page = new_page(locale="zh-CN")
    seed_browser(page, server)
    banner = page.get_by_test_id("migrate-banner")
    banner.wait_for()
    assert "2 个以前的对话" in banner.inner_text()
    shot(page, "migrate-offer")
    page.get_by_test_id("migrate-accept").click()
    page.wait_for_function("() => document.getElementById('migrate-banner').dataset.phase === 'done'")
    assert "已把 2 个对话移到服务器上" in banner.inner_text()

    moved = {item["title"]: item for item in listed(server)}
    assert set(moved) == {"旧对话：长城", "Old chat with a file"}
    wall = stored(server, moved["旧对话：长城"]["id"])
    assert wall["system"] == "Be brief."
    answer = wall["messages"][1]
    assert (answer["content"], answer["tokens_per_s"], answer["time_to_first_token_s"]) == ("大约两万公里。", 31.5, 0.15)
    filed = stored(server, moved["Old chat with a file"]["id"])["messages"]
    assert filed[0]["content"] == "File: a.js\n```javascript\nlet a = 1;\n```\n\nWhat does it do?", \
        "a file goes as the model read it"
    assert filed[1]["state"] == "cut_short"
    assert browser_records(page) == [], "moved: the browser's copies are gone"
    assert items(page).count() == 2, "the sidebar lists them from the server"

    page.reload()
    wait_ready(page)
    page.wait_for_timeout(300)
    assert page.get_by_test_id("migrate-banner").is_hidden(), "asked once"
    open_conversation(page, "Old chat with a file")
    assert page.get_by_test_id("attachment-name").inner_text() == "a.js"

    # Another browser (or one whose move was cut off before its copies went) holding the same
    # chats moves them again: the server has them already and adds nothing.
    again = new_page(locale="en-US")
    seed_browser(again, server)
    again.get_by_test_id("migrate-accept").click()
    again.wait_for_function("() => document.getElementById('migrate-banner').dataset.phase === 'done'")
    assert len(listed(server)) == 2, "a repeated move never duplicates"


def test_declining_the_move_keeps_the_chats_in_the_browser_and_is_remembered(new_page, fake_server):
    server = fake_server()
    page = new_page(locale="en-US")
    seed_browser(page, server)
    page.get_by_test_id("migrate-decline").click()
    assert page.get_by_test_id("migrate-banner").is_hidden()
    page.reload()
    wait_ready(page)
    page.wait_for_timeout(300)
    assert page.get_by_test_id("migrate-banner").is_hidden()
    assert len(browser_records(page)) == 2 and listed(server) == []


def test_with_keys_each_user_sees_only_their_own_chats(new_page, fake_server):
    server = fake_server(keys={"alice-key-0123456789": "alice", "bob-key-0123456789ab": "bob"})
    alice = new_page(locale="en-US")
    alice.goto(f"{server.url}/#key=alice-key-0123456789")
    wait_ready(alice)
    ask(alice, "Alice's secret plan")
    wait_answer_done(alice)
    bob = new_page(locale="en-US")
    bob.goto(f"{server.url}/#key=bob-key-0123456789ab")
    wait_ready(bob)
    bob.get_by_test_id("conversation-empty").wait_for()
    assert bob.get_by_test_id("conversation-empty").inner_text() == "No conversations yet"
    bob.get_by_test_id("search-input").fill("secret")
    bob.wait_for_timeout(600)
    assert bob.get_by_test_id("conversation-item").count() == 0, "Bob's search does not find Alice's chat"
    [summary] = httpx.get(f"{server.url}/v1/conversations",
                          headers={"Authorization": "Bearer alice-key-0123456789"}).json()["data"]
    assert summary["title"] == "Alice's secret plan"


def test_a_server_without_its_history_file_still_chats_and_the_browser_keeps_it(new_page, fake_server, tmp_path):
    broken = tmp_path / "history.db"
    broken.write_bytes(b"this is not an SQLite database" * 100)
    server = fake_server(answer=numbered(), history_path=broken)
    assert httpx.get(f"{server.url}/v1/conversations").json()["error"]["code"] == "history_unavailable"
    page = new_page(locale="en-US")
    sent = record_sent_frames(page)
    open_app(page, server)
    ask(page, "Still there?")
    wait_answer_done(page)
    assert page.get_by_test_id("answer-body").inner_text() == "Answer 1."
    [record] = browser_records(page)
    assert record["title"] == "Still there?", "the browser keeps the chat, as browser mode does"
    assert page.get_by_test_id("conversation-item").count() == 1

    # The browser's history has branches too, and sends the whole branch on show.
    ask(page, "Second question")
    wait_answer_done(page, count=2)
    page.get_by_test_id("message-user").last.hover()
    page.get_by_test_id("edit-message").last.click()
    page.get_by_test_id("edit-input").fill("Second question, edited")
    page.get_by_test_id("edit-save").click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=answer-body]')].at(-1)"
                           "?.textContent.trim() === 'Answer 3.'")
    contents = [m["content"] for m in [f for f in sent if f.get("type") == "chat"][-1]["messages"]]
    assert contents[1:] == ["Still there?", "Answer 1.", "Second question, edited"]
    page.reload()
    wait_ready(page)
    open_conversation(page, "Still there?")
    assert page.get_by_test_id("branch-position").inner_text() == "2/2"
    page.get_by_test_id("branch-prev").click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=answer-body]')].at(-1)"
                           "?.textContent.trim() === 'Answer 2.'")


def test_browser_mode_keeps_branches_in_indexeddb(new_page, fake_server):
    """Browser mode's history (history-local.js) on this page's IndexedDB: the same branches as
    the server's, and records from before branches read as one branch."""
    server = fake_server()
    page = new_page()
    open_app(page, server)
    result = page.evaluate("""async () => {
        const { localHistory } = await import('/static/history-local.js');
        const store = await import('/static/store.js');
        const conversation = {id: 'local', title: 'Local', createdAt: 1, updatedAt: 1, role: 'custom',
                              system: 'Be brief.', stored: false, messages: []};
        const turn = async (parentId, text, answer) => {
            const user = text === null ? null : {role: 'user', content: text};
            const request = await localHistory.beginTurn(conversation, {parentId, user});
            await localHistory.endTurn(conversation, {parentId, user}, {role: 'assistant', content: answer, finish: 'stop'});
            return request.messages.map((m) => m.content);
        };
        await localHistory.create(conversation);
        const first = await turn(null, 'Q1', 'A1');
        const second = await turn(conversation.messages.at(-1).id, 'Q2', 'A2');
        const edited = await turn(null, 'Q1 edited', 'A3');
        const editShown = conversation.messages.map((m) => [m.content, m.siblings.index + 1, m.siblings.count]);
        const again = await turn(conversation.messages[0].id, null, 'A4');
        const reopened = await localHistory.open('local');
        await localHistory.switchBranch(reopened, reopened.messages[0].siblings.ids[0]);
        const switched = (await localHistory.open('local')).messages.map((m) => m.content);
        await store.putConversation({id: 'legacy', title: 'Old', createdAt: 1, updatedAt: 1, role: 'general', system: '',
            messages: [{role: 'user', content: 'hi'}, {role: 'assistant', content: 'hello', finish: 'stop'}]});
        const legacy = (await localHistory.open('legacy')).messages.map((m) => [m.content, m.parentId === null]);
        const found = (await localHistory.list('q2')).items.map((item) => [item.id, item.match.snippet]);
        return {first, second, edited, editShown, again, switched, legacy, found};
    }""")
    assert result["first"] == ["Be brief.", "Q1"]
    assert result["second"] == ["Be brief.", "Q1", "A1", "Q2"], "the whole branch goes to the model in the page"
    assert result["edited"] == ["Be brief.", "Q1 edited"], "an edited first message starts afresh"
    assert result["editShown"] == [["Q1 edited", 2, 2], ["A3", 1, 1]]
    assert result["again"] == ["Be brief.", "Q1 edited"], "answering again sends the question's branch"
    assert result["switched"] == ["Q1", "A1", "Q2", "A2"], "a sibling shows where its branch was left"
    assert result["legacy"] == [["hi", True], ["hello", False]]
    assert result["found"] == [["local", "Q2"]]


def test_server_history_fits_a_375px_phone(new_page, fake_server):
    server = fake_server(answer=numbered())
    page = new_page(locale="zh-CN", viewport=PHONE)
    seed_browser(page, server)
    banner = page.get_by_test_id("migrate-banner")
    banner.wait_for()
    for testid in ("migrate-accept", "migrate-decline"):
        box = page.get_by_test_id(testid).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{testid} fits the screen"
    shot(page, "migrate-phone")
    page.get_by_test_id("migrate-decline").click()

    ask(page, "第一个问题，关于长城的历史")
    wait_answer_done(page)
    page.get_by_test_id("message-user").hover()
    page.get_by_test_id("edit-message").click()
    page.get_by_test_id("edit-input").fill("改过的问题")
    page.get_by_test_id("edit-save").click()
    page.get_by_test_id("branch-position").wait_for()
    wait_answer_done(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways scrolling"
    for testid in ("branch-prev", "branch-position", "branch-next", "edit-message"):
        box = page.get_by_test_id(testid).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{testid} fits the screen"
    shot(page, "branches-phone")

    page.get_by_test_id("sidebar-toggle").click()
    page.get_by_test_id("search-input").fill("长城")
    page.get_by_test_id("conversation-snippet").wait_for()
    box = page.get_by_test_id("conversation-snippet").bounding_box()
    assert box["x"] + box["width"] <= PHONE["width"], "the snippet is clipped to the drawer"
    shot(page, "search-phone")
    page.get_by_test_id("conversation-open").click()
    page.locator("[data-hit=true]").wait_for()
    assert page.get_by_test_id("user-text").inner_text() == "第一个问题，关于长城的历史"

    page.get_by_test_id("settings-button").click()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "history-settings-phone")

