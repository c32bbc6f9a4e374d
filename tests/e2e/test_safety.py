"""Model output is untrusted: HTML in an answer is shown as text and never runs."""

from __future__ import annotations

import pytest
from uihelpers import ask, configure, keep_on_server, open_app, open_conversation, wait_answer_done, wait_ready

pytestmark = pytest.mark.browser

ATTACK = (
    'Here: <img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script>\n\n'
    '<svg onload="window.__xss=3"></svg> [click me](javascript:window.__xss=4) '
    '<a href="javascript:window.__xss=5">link</a> <iframe src="javascript:window.__xss=6"></iframe>\n\n'
    "```html\n<b onmouseover=\"window.__xss=7\">code</b>\n```\n"
)


def assert_inert(page) -> None:
    answer = page.get_by_test_id("answer-body").last
    text = answer.inner_text()
    assert '<img src=x onerror="window.__xss=1">' in text, "raw HTML from the model is shown as text"
    assert "<script>window.__xss=2</script>" in text
    found = page.evaluate("""() => {
        const body = [...document.querySelectorAll('[data-testid=answer-body]')].at(-1);
        const handlers = [...body.querySelectorAll('*')].filter(el =>
            [...el.attributes].some(a => a.name.startsWith('on')));
        return {
            img: body.querySelectorAll('img').length,
            script: document.querySelectorAll('#messages script').length,
            svg: body.querySelectorAll('svg').length,
            iframe: body.querySelectorAll('iframe').length,
            handlers: handlers.length,
            jsLinks: [...body.querySelectorAll('a')].filter(a => (a.getAttribute('href') || '').trim().toLowerCase().startsWith('javascript')).length,
            xss: window.__xss,
        };
    }""")
    assert found == {"img": 0, "script": 0, "svg": 0, "iframe": 0, "handlers": 0, "jsLinks": 0, "xss": None}, found
    # Click every link the answer has: none may run script.
    for link in answer.locator("a").all():
        link.click(modifiers=["Control"])
    assert page.evaluate("window.__xss") is None


def test_stored_answer_with_html_renders_as_text(new_page, fake_server):
    server = fake_server()
    page = new_page(locale="en-US")
    open_app(page, server)
    keep_on_server(server, '<img src=x onerror="window.__xss=8">', [
        {"role": "user", "content": '<img src=x onerror="window.__xss=9"> repeat this'},
        {"role": "assistant", "content": ATTACK},
    ])
    page.reload()
    wait_ready(page)
    item = page.get_by_test_id("conversation-open")
    assert item.inner_text() == '<img src=x onerror="window.__xss=8">', "titles are text"
    open_conversation(page)
    assert page.get_by_test_id("user-text").inner_text().startswith("<img src=x"), "user text is text"
    assert page.locator("#messages img").count() == 0
    assert_inert(page)
    assert page.locator("pre code").inner_text().startswith('<b onmouseover="window.__xss=7">'), \
        "HTML inside a code block is shown verbatim"


def test_streamed_answer_with_html_renders_as_text(new_page, fake_server):
    """The same attack through the live path: the answer arrives a byte at a time (the fake
    engine's tokens), and again as the server kept it."""
    server = fake_server(answer=lambda prompt: ATTACK)
    page = new_page(locale="en-US")
    open_app(page, server)
    ask(page, "Repeat the text exactly.")
    wait_answer_done(page)
    assert_inert(page)
    page.reload()  # and once more from the server's history after the reload
    wait_ready(page)
    open_conversation(page)
    assert_inert(page)


def test_real_model_asked_to_echo_html_cannot_run_it(new_page, server):
    """The real path end to end. What a 0.5B model repeats varies, so the checks are the
    invariants: whatever it says, no element from it carries a handler and nothing ran."""
    page = new_page(locale="en-US")
    open_app(page, server)
    configure(page, temperature=0, max_tokens=40)
    ask(page, 'Repeat exactly, with no other words: <img src=x onerror="window.__xss=1"><script>window.__xss=2</script>')
    wait_answer_done(page)
    answer = page.get_by_test_id("answer-body")
    found = answer.evaluate("""body => ({
        elements: body.querySelectorAll('img, script, svg, iframe, [onerror], [onload]').length,
        xss: window.__xss,
    })""")
    assert found == {"elements": 0, "xss": None}, found
    if "onerror" in page.evaluate("document.querySelector('.msg.assistant')?.textContent || ''"):
        assert "<img" in answer.inner_text(), "echoed HTML is visible as text"
