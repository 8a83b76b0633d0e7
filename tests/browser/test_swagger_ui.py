"""Swagger UI of a real FastAPI app behind the demo proxy, in headless Chromium: it renders, "Try it out"
works, and no request leaves the tunnel's prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from agent.sample_app import create_app
from tests.support.browser import Traffic, launch_chromium, skip_without_chromium
from tests.support.proxies import behind_demo_proxy
from tests.support.servers import RunningServer, serve_in_thread

pytestmark = [pytest.mark.browser, skip_without_chromium]

PREFIX = "/t3st1d"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    yield from launch_chromium()


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningServer]:
    """The sample pet store behind the demo proxy under /t3st1d, both on loopback."""

    with serve_in_thread(create_app()) as app, behind_demo_proxy(app.origin, prefix=PREFIX) as server:
        yield server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in a fresh context."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def test_swagger_ui_try_it_out(proxy: RunningServer, page: Page) -> None:
    """Swagger UI renders through the proxy, "Execute" on GET /api/items answers 200, and every request stays
    under the prefix."""
    base = f"{proxy.origin}{PREFIX}/"
    traffic = Traffic().attach(page)

    page.goto(base + "docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Pet Store", timeout=15_000)
    operation = page.locator("#operations-items-list_items_api_items_get")
    expect(operation).to_be_visible()
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator("button.execute").click()

    status = operation.locator(".live-responses-table tbody .response-col_status")
    expect(status).to_contain_text("200", timeout=15_000)
    expect(operation.locator(".request-url")).to_contain_text(f"{PREFIX}/api/items")
    expect(operation.locator(".live-responses-table tbody .response-col_description")).to_contain_text("Rex")

    assert traffic.wait_for_response(page, base + "api/items") == 200
    assert traffic.responses[base + "openapi.json"] == 200
    assert traffic.responses[base + "static/swagger-ui/swagger-ui-bundle.js"] == 200
    assert traffic.responses[base + "static/swagger-ui/swagger-ui.css"] == 200
    assert traffic.escaped(base) == []
    assert traffic.failed == []
    assert traffic.bad_responses() == {}
    assert traffic.errors == []


def test_swagger_ui_post_creates_item(proxy: RunningServer, page: Page) -> None:
    """ "Try it out" on POST /api/items sends the example body through the proxy and shows 201."""
    base = f"{proxy.origin}{PREFIX}/"
    traffic = Traffic().attach(page)

    page.goto(base + "docs")
    operation = page.locator("#operations-items-create_item_api_items_post")
    expect(operation).to_be_visible(timeout=15_000)
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator("button.execute").click()

    expect(operation.locator(".live-responses-table tbody .response-col_status")).to_contain_text(
        "201", timeout=15_000
    )
    assert traffic.escaped(base) == []
    assert traffic.failed == []
    assert traffic.bad_responses() == {}


def test_control_without_rewriting_requests_escape(browser: Browser) -> None:
    """Control: with rewriting switched off, the same page sends requests outside the prefix, so the checks
    above would catch a rewriter that stopped working."""

    context = browser.new_context()
    try:
        with (
            serve_in_thread(create_app()) as app,
            behind_demo_proxy(app.origin, prefix=PREFIX, strategy="none", inject_context=False) as server,
        ):
            page = context.new_page()
            traffic = Traffic().attach(page)
            page.goto(f"{server.origin}{PREFIX}/docs")
            assert traffic.wait_for_response(page, f"{server.origin}/static/swagger-ui/swagger-ui.css") == 404
            assert traffic.escaped(f"{server.origin}{PREFIX}/") != []
    finally:
        context.close()


def test_swagger_ui_in_host_mode(browser: Browser) -> None:
    """In host mode (http://t3st1d.localhost:<port>/, no prefix) Swagger UI renders and "Try it out" answers
    200 with every request on the tunnel's own host."""

    context = browser.new_context()
    try:
        with (
            serve_in_thread(create_app()) as app,
            behind_demo_proxy(app.origin, prefix="", host="t3st1d.localhost") as server,
        ):
            base = f"http://t3st1d.localhost:{server.port}/"
            page = context.new_page()
            traffic = Traffic().attach(page)
            page.goto(base + "docs")
            operation = page.locator("#operations-items-list_items_api_items_get")
            expect(operation).to_be_visible(timeout=15_000)
            operation.locator(".opblock-summary").click()
            operation.locator(".try-out__btn").click()
            operation.locator("button.execute").click()
            status = operation.locator(".live-responses-table tbody .response-col_status")
            expect(status).to_contain_text("200", timeout=15_000)
            assert traffic.wait_for_response(page, base + "api/items") == 200
            assert traffic.escaped(base) == []
            assert traffic.failed == []
            assert traffic.bad_responses() == {}
    finally:
        context.close()
