"""Text files in the composer (dropped, pasted, picked) and the context gauge under it.

The real server counts the tokens (/tokenize) and, in the first test, answers with the real
model; the other tests fake only the WebSocket (fakesocket.py) where they need an answer with
chosen usage numbers.
"""

from __future__ import annotations

import base64

import httpx
import pytest
from fakesocket import FakeSocket
from uihelpers import (ask, configure, keep_on_server, open_app, open_conversation, record_received_frames,
                       record_sent_frames, shot, stored_messages, wait_answer_done, wait_ready)

pytestmark = pytest.mark.browser

DEBOUNCE_JS = """function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
"""
PHONE = {"width": 375, "height": 740}


def files_event(page, kind: str, files: list[tuple[str, bytes]]) -> None:
    """Drop (`kind` "drop", on the chat) or paste ("paste", into the composer) files, as the
    browser does when a user drags them from the desktop or pastes them."""
    payload = [{"name": name, "data": base64.b64encode(data).decode()} for name, data in files]
    page.evaluate("""([kind, files]) => {
        const transfer = new DataTransfer();
        for (const {name, data} of files) {
            const bytes = Uint8Array.from(atob(data), (ch) => ch.charCodeAt(0));
            transfer.items.add(new File([bytes], name));
        }
        if (kind === 'paste') {
            document.getElementById('chat-input').dispatchEvent(
                new ClipboardEvent('paste', {clipboardData: transfer, bubbles: true, cancelable: true}));
            return;
        }
        const target = document.getElementById('chat');
        for (const type of ['dragenter', 'dragover', 'drop']) {
            target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
    }""", [kind, payload])


def drop(page, *files: tuple[str, bytes]) -> None:
    files_event(page, "drop", list(files))


def chips(page):
    return page.get_by_test_id("attachment-chip")


def wait_chips_counted(page, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=attachment-chip]').length === n"
        " && !document.querySelector('[data-testid=attachment-chip][aria-busy=true]')", arg=count)


def refusals(page) -> list[str]:
    return page.get_by_test_id("attach-refusal").all_inner_texts()


def gauge_used(page) -> int:
    return int(page.get_by_test_id("context-gauge").get_attribute("data-used"))


def wait_gauge(page, condition: str, arg=None) -> None:
    """Wait until the gauge's `used` satisfies `condition` (a JS expression of `used` and `arg`)."""
    page.wait_for_function(
        f"arg => {{ const g = document.getElementById('context-gauge');"
        f" const used = Number(g.dataset.used); return !g.hidden && g.dataset.used !== undefined && ({condition}); }}",
        arg=arg)


def tokens_of(server, text: str) -> int:
    response = httpx.post(f"{server.url}/tokenize", json={"content": text, "parse_special": False})
    return len(response.json()["tokens"])


def test_dropped_js_file_goes_with_the_message_and_stays_with_the_chat(new_page, server):
    page = new_page(locale="zh-CN")
    sent = record_sent_frames(page)
    received = record_received_frames(page)
    open_app(page, server)
    configure(page, temperature=0, max_tokens=24)
    wait_gauge(page, "used > 0")
    empty_chat = gauge_used(page)

    drop(page, ("debounce.js", DEBOUNCE_JS.encode()))
    wait_chips_counted(page, 1)
    chip = chips(page).first
    assert chip.get_by_test_id("attachment-name").inner_text() == "debounce.js"
    # The chip counts exactly what the model will read for the file: its name and fenced text.
    block = f"File: debounce.js\n```javascript\n{DEBOUNCE_JS.rstrip()}\n```"
    tokens = tokens_of(server, block)
    assert chip.get_attribute("data-tokens") == str(tokens)
    assert chip.get_by_test_id("attachment-meta").inner_text() == f"{len(DEBOUNCE_JS)} B · {tokens} tokens"
    wait_gauge(page, "used >= arg", empty_chat + tokens)

    question = "把这段代码改写成 TypeScript。"
    ask(page, question)
    wait_answer_done(page)
    chat = [frame for frame in sent if frame.get("type") == "chat"][-1]
    user = chat["messages"][-1]
    assert user["role"] == "user"
    assert user["content"] == f"{block}\n\n{question}", "the file's text is part of the message, the question last"

    # The transcript shows the file as a chip and the typed text in the bubble, not the dump.
    message = page.get_by_test_id("message-user").last
    assert message.get_by_test_id("message-attachment").get_by_test_id("attachment-name").inner_text() == "debounce.js"
    assert message.get_by_test_id("user-text").inner_text() == question
    assert "clearTimeout" not in message.inner_text()
    assert chips(page).count() == 0, "the composer is empty again"

    # The gauge now counts what the model has read and written: the answer's own usage.
    usage = [frame for frame in received if frame.get("type") == "done"][-1]["usage"]
    wait_gauge(page, "used === arg", usage["prompt_tokens"] + usage["completion_tokens"] + 2)
    assert gauge_used(page) > empty_chat + tokens, "the gauge moved with the answer"
    shot(page, "attachment-sent")

    # Reload: the chat the server kept still has the file (read back into a chip), and the
    # model reads it on the next turn: the server keeps it in the history it puts in front.
    page.reload()
    wait_ready(page)
    open_conversation(page)
    assert page.get_by_test_id("message-attachment").get_by_test_id("attachment-name").inner_text() == "debounce.js"
    assert page.get_by_test_id("user-text").inner_text() == question
    ask(page, "谢谢")
    wait_answer_done(page, count=2)
    chat = [frame for frame in sent if frame.get("type") == "chat"][-1]
    assert chat["messages"] == [{"role": "user", "content": "谢谢"}]
    assert stored_messages(server)[0]["content"] == f"{block}\n\n{question}", "later turns still send the file"


@pytest.mark.parametrize("locale,expected", [
    ("en-US", "“photo.txt” is not a text file (binary, or not UTF-8); not added."),
    ("zh-CN", "“photo.txt”不是文本文件（二进制内容或非 UTF-8 编码），未添加。"),
])
def test_binary_files_are_refused_by_their_bytes(new_page, server, locale, expected):
    page = new_page(locale=locale)
    open_app(page, server)
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    latin1 = "name,city\nRené,Zürich\n".encode("latin-1")  # not UTF-8, no NUL byte
    drop(page, ("photo.txt", png), ("people.csv", latin1), ("notes.md", "# 笔记\n\n- 第一条\n".encode()))
    wait_chips_counted(page, 1)
    assert chips(page).get_by_test_id("attachment-name").inner_text() == "notes.md", "the text file is taken"
    assert expected in refusals(page), "an image named .txt is refused by its bytes, not its name"
    assert len(refusals(page)) == 2, "invalid UTF-8 is refused too"
    assert any(line.startswith("“people.csv”") for line in refusals(page))
    shot(page, f"attachment-refused-{locale}")
    page.get_by_test_id("attach-notice-close").click()
    assert page.get_by_test_id("attach-notice").is_hidden()


def test_oversize_and_too_many_files_are_refused(new_page, server):
    page = new_page(locale="en-US")
    open_app(page, server)
    configure(page, max_tokens=512)
    tokenized = []
    page.on("request", lambda request: tokenized.append(request) if request.url.endswith("/tokenize") else None)

    # Past the hard cap: refused without being read or counted.
    drop(page, ("dump.log", b"x" * (600 * 1024)))
    page.get_by_test_id("attach-refusal").wait_for()
    assert refusals(page) == ["“dump.log” is too large (600.0 KB); a file may be at most 512.0 KB. Not added."]
    assert chips(page).count() == 0 and not tokenized

    # Under the cap, but alone more than the context (2048) leaves once 512 are kept for the answer.
    words = " ".join(f"item{i} costs {i * 7 % 1000} yuan;" for i in range(600))
    drop(page, ("prices.txt", words.encode()))
    page.get_by_test_id("attach-refusal").wait_for()
    [refusal] = refusals(page)
    assert refusal.startswith("“prices.txt” is ")
    assert "its context is 2048 tokens, 1536 once the answer's room is kept" in refusal, refusal
    assert chips(page).count() == 0

    # Five files a message; the sixth is named and left out.
    drop(page, *[(f"part{i}.txt", f"part {i}\n".encode()) for i in range(6)])
    wait_chips_counted(page, 5)
    assert refusals(page) == ["At most 5 files per message; “part5.txt” was not added."]
    chips(page).nth(0).get_by_test_id("attachment-remove").click()
    assert chips(page).count() == 4 and "part0.txt" not in chips(page).all_inner_texts()


def test_pasted_file_becomes_a_chip_and_pasted_text_stays_text(new_page, server):
    page = new_page(locale="en-US")
    open_app(page, server)
    files_event(page, "paste", [("data.json", b'{"a": 1}\n')])
    wait_chips_counted(page, 1)
    assert chips(page).get_by_test_id("attachment-name").inner_text() == "data.json"
    assert page.get_by_test_id("chat-input").input_value() == "", "a file is not pasted as text"


def test_gauge_follows_usage_warns_near_the_limit_and_does_not_count_every_key(new_page, server):
    page = new_page(locale="en-US")
    fake = FakeSocket(page)
    open_app(page, server)
    configure(page, max_tokens=512)  # the server's context is 2048: 1536 for the prompt
    tokenize = []
    page.on("request", lambda request: tokenize.append(request) if request.url.endswith("/tokenize") else None)

    def answer_with(prompt_tokens: int):
        def on_chat(fake, message):
            fake.send({"type": "token", "text": "OK."})
            fake.send({"type": "done", "finish_reason": "stop",
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 50,
                                 "total_tokens": prompt_tokens + 50},
                       "timings": {"time_to_first_token_ms": 100.0, "tokens_per_second": 30.0,
                                   "completion_tokens": 50}})
        fake.on_chat = on_chat

    gauge = page.get_by_test_id("context-gauge")
    answer_with(600)
    ask(page, "hi")
    wait_answer_done(page)
    wait_gauge(page, "used === 652")
    assert gauge.get_attribute("data-level") == "ok"
    assert page.get_by_test_id("gauge-text").inner_text() == "652 / 2,048"
    ok_colour = page.locator("#gauge-fill").evaluate("el => getComputedStyle(el).backgroundColor")

    answer_with(1200)
    ask(page, "more")
    wait_answer_done(page, count=2)
    wait_gauge(page, "used === 1252")
    assert gauge.get_attribute("data-level") == "warn", "over 80% of the prompt's room"
    assert page.locator("#gauge-fill").evaluate("el => getComputedStyle(el).backgroundColor") != ok_colour

    # Typing is counted once it pauses, not per key.
    before = len(tokenize)
    page.get_by_test_id("chat-input").press_sequentially("a longer question for the model " * 2, delay=20)
    wait_gauge(page, "used > 1252")
    page.wait_for_timeout(700)
    assert len(tokenize) - before <= 2, f"{len(tokenize) - before} /tokenize requests while typing"

    answer_with(1500)
    ask(page, "and more")
    wait_answer_done(page, count=3)
    wait_gauge(page, "used === 1552")
    assert gauge.get_attribute("data-level") == "full", "the next message cannot leave 512 for the answer"
    assert "trim the chat" in gauge.get_attribute("title")
    shot(page, "gauge-full")


def test_without_tokenize_counts_are_estimates_and_say_so(new_page, server):
    page = new_page(locale="en-US")
    page.route("**/tokenize", lambda route: route.fulfill(status=500, body="{}"))
    open_app(page, server)
    drop(page, ("debounce.js", DEBOUNCE_JS.encode()))
    wait_chips_counted(page, 1)
    meta = chips(page).get_by_test_id("attachment-meta").inner_text()
    assert "≈" in meta and "estimate" in meta, meta
    estimate = int(chips(page).first.get_attribute("data-tokens"))
    exact = tokens_of(server, f"File: debounce.js\n```javascript\n{DEBOUNCE_JS.rstrip()}\n```")
    assert abs(estimate - exact) <= 0.25 * exact, f"estimated {estimate}, the tokenizer says {exact}"
    wait_gauge(page, "used > 0")
    assert page.get_by_test_id("gauge-text").inner_text().startswith("≈")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_files_and_gauge_fit_a_375px_phone(new_page, server, scheme):
    page = new_page(locale="en-US", viewport=PHONE, color_scheme=scheme)
    FakeSocket(page).on_chat = lambda fake, message: fake.answer("Done.")
    open_app(page, server)
    drop(page, ("a-rather-long-file-name-for-a-small-screen.component.tsx", b"export const x = 1;\n"),
         ("README.md", b"# Title\n\nSome text.\n"))
    wait_chips_counted(page, 2)
    page.get_by_test_id("chat-input").fill("Explain these files.")
    wait_gauge(page, "used > 0")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways scrolling"
    for locator in (chips(page).nth(0), chips(page).nth(1), page.get_by_test_id("attach-button"),
                    page.get_by_test_id("send-button"), page.get_by_test_id("context-gauge"),
                    chips(page).nth(0).get_by_test_id("attachment-remove")):
        box = locator.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{locator} fits the screen"
    assert page.get_by_test_id("context-gauge").bounding_box()["height"] <= 20, "the gauge stays one small line"
    shot(page, f"attachments-phone-{scheme}")
    page.get_by_test_id("send-button").click()
    wait_answer_done(page)
    box = page.get_by_test_id("message-attachment").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], "chips in the transcript fit too"
    shot(page, f"attachments-phone-sent-{scheme}")


def test_send_waits_for_a_file_being_counted_and_edit_keeps_the_files(new_page, server):
    page = new_page(locale="en-US")
    fake = FakeSocket(page)
    fake.on_chat = lambda fake, message: fake.answer("Fine.")
    open_app(page, server)
    # /tokenize answers slowly, as a big file on a busy server would.
    page.evaluate("""() => {
        const fetchNow = window.fetch;
        window.fetch = (url, init) => String(url).endsWith('/tokenize')
            ? new Promise((resolve) => setTimeout(resolve, 800)).then(() => fetchNow(url, init))
            : fetchNow(url, init);
    }""")
    drop(page, ("notes.txt", b"Buy milk.\n"))
    assert chips(page).first.get_attribute("aria-busy") == "true"
    ask(page, "Summarize.")  # sent while the file is still being counted
    wait_answer_done(page)
    assert fake.chats()[-1]["messages"][-1]["content"] == "File: notes.txt\n```text\nBuy milk.\n```\n\nSummarize.", \
        "the send waited for the file instead of going without it"

    # Editing the typed text resends the message with its files.
    page.get_by_test_id("message-user").hover()
    page.get_by_test_id("edit-message").click()
    assert page.get_by_test_id("message-user").get_by_test_id("message-attachment").count() == 1
    page.get_by_test_id("edit-input").fill("List the items.")
    page.get_by_test_id("edit-save").click()
    page.wait_for_function("() => document.querySelector('[data-testid=user-text]')?.textContent === 'List the items.'"
                           " && document.querySelectorAll('[data-testid=answer-stats]').length === 1"
                           " && !document.querySelector('.msg.pending')")
    assert len(fake.chats()) == 2
    assert fake.chats()[-1]["messages"][-1]["content"].endswith("Buy milk.\n```\n\nList the items.")
    assert page.get_by_test_id("message-attachment").count() == 1


def test_overflow_new_chat_takes_the_question_and_its_files(new_page, server):
    page = new_page(locale="en-US")
    fake = FakeSocket(page)
    fake.on_chat = lambda fake, message: fake.send({"type": "error", "error": {
        "code": "context_length_exceeded", "message": "too long", "prompt_tokens": 1900, "max_tokens": 512,
        "context_size": 2048}})
    open_app(page, server)
    drop(page, ("report.md", b"# Report\n\nAll good.\n"))
    wait_chips_counted(page, 1)
    ask(page, "Shorten it.")
    page.get_by_test_id("overflow-card").wait_for()
    page.get_by_test_id("overflow-new-chat").click()
    assert page.get_by_test_id("empty-state").is_visible()
    assert page.get_by_test_id("chat-input").input_value() == "Shorten it."
    wait_chips_counted(page, 1)
    assert chips(page).get_by_test_id("attachment-name").inner_text() == "report.md", "the file moves with its question"


@pytest.fixture(scope="module")
def browser_home(tmp_path_factory):
    return tmp_path_factory.mktemp("jisu-home-attachments-device")


def test_in_browser_mode_counts_are_estimates_until_the_answer_counts(new_page, model_path, browser_home):
    """wllama has no tokenizer call: the page estimates, says so, and asks no server to count;
    the answer's usage (llama.cpp's own, in the page) then gives the exact figure."""
    from test_browser_mode import ANSWER_MS, server_and_page, switch_to_device

    with server_and_page(new_page, model_path, browser_home, "e2e-attachments-device",
                         locale="en-US") as (_, page, requests):
        switch_to_device(page)
        counted_by_server = sum(url.endswith("/tokenize") for url in requests)  # in server mode, before the switch
        configure(page, temperature=0, max_tokens=8)
        drop(page, ("debounce.js", DEBOUNCE_JS.encode()))
        wait_chips_counted(page, 1)
        assert "≈" in chips(page).get_by_test_id("attachment-meta").inner_text()
        wait_gauge(page, "used > 0")
        gauge = page.get_by_test_id("context-gauge")
        assert gauge.get_attribute("data-size") == "4096", "the page's own context in browser mode"
        assert page.get_by_test_id("gauge-text").inner_text().startswith("≈")

        ask(page, "What does this do? One sentence.")
        wait_answer_done(page, 1, timeout=ANSWER_MS)
        usage = page.evaluate("async () => (await (await import('/static/store.js')).listConversations())[0]"
                              ".messages.at(-1).usage")
        wait_gauge(page, "used === arg", usage["prompt_tokens"] + usage["completion_tokens"] + 2)
        assert gauge.get_attribute("data-estimated") == "false", "after the answer the count is llama.cpp's own"
        assert sum(url.endswith("/tokenize") for url in requests) == counted_by_server, \
            "browser mode asks no server to count"


def test_a_chat_stored_without_usage_is_counted_in_one_request(new_page, server):
    page = new_page(locale="en-US")
    open_app(page, server)
    turns = [{"role": role, "content": f"{role} message number {i}: " + "some words " * 10}
             for i in range(15) for role in ("user", "assistant")]
    keep_on_server(server, "Old chat", turns, system="Be brief.")
    page.reload()
    wait_ready(page)
    wait_gauge(page, "used > 0")
    tokenize = []
    page.on("request", lambda request: tokenize.append(request) if request.url.endswith("/tokenize") else None)
    open_conversation(page, "Old chat")
    history = "\n".join(["Be brief.", *(turn["content"] for turn in turns)])
    expected = 3 + 5 + 5 * len(turns) + tokens_of(server, history)
    wait_gauge(page, "used === arg", expected)
    assert len(tokenize) == 1, "thirty messages, one request"
