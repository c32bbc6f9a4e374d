"""Language, theme and small screens."""

from __future__ import annotations

import pytest
from uihelpers import ask, configure, keep_on_server, open_app, open_conversation, shot, wait_answer_done, wait_ready

pytestmark = pytest.mark.browser


def labels(page) -> dict[str, str]:
    return {
        "new_chat": page.get_by_test_id("new-chat").inner_text().strip(),
        "send": page.get_by_test_id("send-button").get_attribute("aria-label"),
        "placeholder": page.get_by_test_id("chat-input").get_attribute("placeholder"),
        "search": page.get_by_test_id("search-input").get_attribute("placeholder"),
        "settings": page.get_by_test_id("settings-button").get_attribute("aria-label"),
        "role": page.get_by_test_id("role-select").locator("option").first.inner_text(),
    }


def unnamed_controls(page) -> list[str]:
    """Visible buttons and form fields without an accessible name (label, aria-label or text)."""
    return page.evaluate("""() => [...document.querySelectorAll('button, select, input, textarea')]
        .filter(el => el.getClientRects().length && !el.closest('[inert]'))
        .filter(el => !(el.getAttribute('aria-label') || (el.labels && el.labels.length)
                        || (el.tagName === 'BUTTON' && el.textContent.trim())))
        .map(el => el.outerHTML.slice(0, 80))""")


def test_language_follows_browser_then_toggle_and_persists(new_page, server):
    page = new_page(locale="en-US")
    open_app(page, server)
    english = labels(page)
    assert english == {
        "new_chat": "New chat", "send": "Send",
        "placeholder": "Message… (Enter to send, Shift+Enter for a new line)",
        "search": "Search chats", "settings": "Settings", "role": "General assistant",
    }
    assert page.evaluate("document.documentElement.lang") == "en"

    page.get_by_test_id("lang-toggle").click()
    chinese = labels(page)
    assert chinese == {
        "new_chat": "新对话", "send": "发送", "placeholder": "输入消息，Enter 发送，Shift+Enter 换行",
        "search": "搜索对话", "settings": "设置", "role": "通用助手",
    }
    assert page.evaluate("document.documentElement.lang") == "zh-CN"

    page.reload()
    wait_ready(page)
    assert labels(page) == chinese, "the chosen language survives a reload, over the browser's"
    page.get_by_test_id("lang-toggle").click()
    assert labels(page) == english


def test_chinese_browser_gets_chinese_interface(new_page, server):
    page = new_page(locale="zh-CN")
    open_app(page, server)
    assert page.get_by_test_id("new-chat").inner_text().strip() == "新对话"
    assert page.get_by_test_id("lang-toggle").inner_text().strip() == "EN"


def test_role_presets_set_the_system_prompt(new_page, server):
    page = new_page(locale="zh-CN")
    open_app(page, server)
    options = page.get_by_test_id("role-select").locator("option").all_inner_texts()
    assert options == ["通用助手", "前端工程师", "语文老师", "翻译", "自定义"]
    page.get_by_test_id("role-select").select_option("translator")
    page.get_by_test_id("settings-button").click()
    assert "翻译" in page.get_by_test_id("setting-system").input_value()
    page.get_by_test_id("setting-system").fill("你是一只只会说“喵”的猫。")
    page.get_by_test_id("settings-close").click()
    assert page.get_by_test_id("role-select").input_value() == "custom", "editing the prompt makes it custom"
    page.reload()
    wait_ready(page)
    assert page.get_by_test_id("role-select").input_value() == "custom", "the role for new chats is remembered"


def test_dark_mode_follows_system_and_toggles(new_page, fake_server):
    server = fake_server()
    page = new_page(locale="zh-CN", color_scheme="dark")
    open_app(page, server)
    theme = lambda: page.evaluate("document.documentElement.dataset.theme")  # noqa: E731
    background = lambda: page.evaluate("getComputedStyle(document.body).backgroundColor")  # noqa: E731
    assert theme() == "dark"
    dark_bg = background()
    assert page.evaluate("document.getElementById('hljs-light').disabled") is True
    # Show a code block so the dark highlight theme is in the screenshot.
    keep_on_server(server, "代码示例", [
        {"role": "user", "content": "写一个 JS 防抖函数"},
        {"role": "assistant", "content": "```js\nfunction debounce(fn, ms) {\n  let t;\n"
                                         "  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };\n}\n```"}])
    page.reload()
    wait_ready(page)
    open_conversation(page)
    assert page.locator("pre code.hljs .hljs-keyword").count() > 0, "code is highlighted"
    assert page.get_by_test_id("copy-code").is_visible()
    assert unnamed_controls(page) == [], "every control has an accessible name"
    shot(page, "dark-mode")

    page.get_by_test_id("theme-toggle").click()
    assert theme() == "light"
    assert background() != dark_bg
    page.reload()
    wait_ready(page)
    assert theme() == "light", "an explicit choice wins over the system setting after reload"


def test_phone_layout_drawer_and_chat(new_page, server):
    page = new_page(locale="zh-CN", viewport={"width": 390, "height": 844})
    open_app(page, server)
    sidebar = page.get_by_test_id("sidebar")

    def sidebar_on_screen() -> bool:
        box = sidebar.bounding_box()
        return box is not None and box["x"] + box["width"] > 1

    assert not sidebar_on_screen(), "on a phone the sidebar starts closed"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling"
    for testid in ("chat-input", "send-button", "sidebar-toggle", "model-name"):
        box = page.get_by_test_id(testid).bounding_box()
        assert box and 0 <= box["x"] and box["x"] + box["width"] <= 390, f"{testid} fits the screen"

    configure(page, temperature=0, max_tokens=16)
    ask(page, "你好")
    wait_answer_done(page)
    shot(page, "phone-chat")

    page.get_by_test_id("sidebar-toggle").click()
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().x >= 0")
    assert page.get_by_test_id("sidebar-toggle").get_attribute("aria-expanded") == "true"
    assert page.get_by_test_id("conversation-item").count() == 1
    shot(page, "phone-drawer")
    page.get_by_test_id("scrim").click(position={"x": 370, "y": 400})
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().right <= 1")
    assert page.get_by_test_id("sidebar-toggle").get_attribute("aria-expanded") == "false"

    # "New chat" and opening a conversation from the drawer close it.
    page.get_by_test_id("sidebar-toggle").click()
    page.get_by_test_id("new-chat").click()
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().right <= 1")
    assert page.get_by_test_id("empty-state").is_visible()
    page.get_by_test_id("sidebar-toggle").click()
    page.get_by_test_id("conversation-open").click()
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().right <= 1")
    assert page.get_by_test_id("user-text").inner_text() == "你好"


def test_desktop_sidebar_collapses_and_expands(new_page, server):
    page = new_page(locale="en-US")
    open_app(page, server)
    toggle = page.get_by_test_id("sidebar-toggle")
    assert toggle.get_attribute("aria-expanded") == "true"
    assert unnamed_controls(page) == [], "every control has an accessible name"
    toggle.click()
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().right <= 1")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert page.get_by_test_id("chat-input").bounding_box()["x"] < 400, "the chat takes the freed space"
    toggle.click()
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().x >= 0")
    assert page.get_by_test_id("new-chat").is_visible()
