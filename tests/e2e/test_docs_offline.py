"""/docs in the real chromium with every other address cut off: Swagger UI comes from jisu
itself, renders the whole API under its CSP, and documents real errors (400, not 422)."""

from __future__ import annotations

from live_server import ARTIFACTS


def test_docs_render_with_no_request_leaving_the_server(server, new_page):
    page = new_page(locale="en-US")
    elsewhere: list[str] = []
    console_errors: list[str] = []

    def only_jisu(route):
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:  # offline: nothing but the server answers
            elsewhere.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_jisu)
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))

    page.goto(f"{server.url}/docs")
    page.locator(".swagger-ui .info .title").filter(has_text="jisu").wait_for()
    for path in ("/v1/chat/completions", "/tokenize", "/detokenize", "/api/chat"):
        page.locator(".opblock-summary-path", has_text=path).first.wait_for()

    tokenize = page.locator(".opblock-post", has=page.locator(".opblock-summary-path[data-path='/tokenize']"))
    tokenize.locator(".opblock-summary").click()
    codes = tokenize.locator(".responses-table .response-col_status")
    codes.first.wait_for()
    statuses = {text.strip() for text in codes.all_inner_texts()}
    page.screenshot(path=str(ARTIFACTS / "docs-offline.png"), full_page=False)

    assert not elsewhere, f"/docs asked for things beyond the server: {elsewhere}"
    assert not console_errors, f"errors on the page (CSP refusals among them): {console_errors}"
    assert {"200", "400", "401", "403", "413"} <= statuses and "422" not in statuses, statuses
