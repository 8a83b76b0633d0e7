"""Our hand-written SPA behind the demo proxy, in headless Chromium: assets, lazy chunks, run-time fetch,
XHR and image URLs, and client-side routing all stay under the tunnel's prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from agent.sample_spa import create_spa_app
from tests.support.browser import Traffic, launch_chromium, skip_without_chromium
from tests.support.proxies import behind_demo_proxy
from tests.support.servers import RunningServer, serve_in_thread

pytestmark = [pytest.mark.browser, skip_without_chromium]

PREFIX = "/t3st1d"
SPA_ROOT = Path(__file__).resolve().parents[2] / "fixtures" / "spa"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    yield from launch_chromium()


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningServer]:
    """The SPA and its API behind the demo proxy under /t3st1d, both on loopback."""

    with (
        serve_in_thread(create_spa_app(SPA_ROOT)) as app,
        behind_demo_proxy(app.origin, prefix=PREFIX) as server,
    ):
        yield server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in a fresh context."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def _assert_stayed_inside(traffic: Traffic, base: str) -> None:
    assert traffic.escaped(base) == []
    assert traffic.failed == []
    assert traffic.bad_responses() == {}
    assert traffic.errors == []


def test_spa_loads_everything_inside_the_prefix(proxy: RunningServer, page: Page) -> None:
    """The module, its import, the stylesheet, the CSS background, the font and the run-time image load
    under the prefix, and the fetch and XHR results reach the DOM."""
    base = f"{proxy.origin}{PREFIX}/"
    traffic = Traffic().attach(page)

    page.goto(base)
    expect(page.locator("#items-count")).to_have_text("3 items")
    expect(page.locator("#item-2")).to_have_text("Tom (cat)")
    expect(page.locator("#item-detail")).to_have_text("Rex")  # URL built at run time: the fetch wrapper
    expect(page.locator("#status")).to_have_text("ok")  # XMLHttpRequest
    expect(page.locator("#runtime-img")).to_have_attribute("data-loaded", "true")  # the src setter
    expect(page.locator("#route")).to_have_text("home")

    for path in (
        "app.js",
        "modules/render.js",
        "styles.css",
        "assets/logo.svg",
        "assets/hero.svg",
        "assets/fonts/shelter.woff2",
        "assets/cat.svg",
        "api/items",
        "api/items/1",
        "api/status",
    ):
        assert traffic.wait_for_response(page, base + path) == 200, path
    _assert_stayed_inside(traffic, base)


def test_spa_client_side_routing(proxy: RunningServer, page: Page) -> None:
    """Clicking the /about link routes in the page: pushState keeps the prefix, the lazy chunk loads, and Back
    returns home."""
    base = f"{proxy.origin}{PREFIX}/"
    traffic = Traffic().attach(page)
    page.goto(base)
    expect(page.locator("#items-count")).to_have_text("3 items")
    documents = [url for url in traffic.requests if url == base]

    page.locator("#nav-about").click()
    expect(page.locator("#about-text")).to_have_attribute("data-chunk", "about")
    expect(page.locator("#route")).to_have_text("about")
    assert page.evaluate("location.pathname") == f"{PREFIX}/about"
    assert traffic.wait_for_response(page, base + "chunks/about.js") == 200
    # Routing stayed in the page: no new document was requested.
    assert [url for url in traffic.requests if url in (base, base + "about")] == documents

    page.go_back()
    expect(page.locator("#route")).to_have_text("home")
    assert page.evaluate("location.pathname") == f"{PREFIX}/"
    _assert_stayed_inside(traffic, base)


def test_spa_deep_link(proxy: RunningServer, page: Page) -> None:
    """Opening /t3st1d/about directly serves the app, which shows the About view."""
    base = f"{proxy.origin}{PREFIX}/"
    traffic = Traffic().attach(page)
    page.goto(base + "about")
    expect(page.locator("#about-text")).to_have_attribute("data-chunk", "about")
    expect(page.locator("#items-count")).to_have_text("3 items")
    assert page.evaluate("location.pathname") == f"{PREFIX}/about"
    _assert_stayed_inside(traffic, base)


def test_control_without_context_script_runtime_urls_escape(browser: Browser) -> None:
    """Control: without the injected context script, the URLs the SPA builds at run time leave the prefix,
    so the checks above really exercise the run-time wrappers."""

    context = browser.new_context()
    try:
        with (
            serve_in_thread(create_spa_app(SPA_ROOT)) as app,
            behind_demo_proxy(app.origin, prefix=PREFIX, inject_context=False) as server,
        ):
            page = context.new_page()
            traffic = Traffic().attach(page)
            page.goto(f"{server.origin}{PREFIX}/")
            assert traffic.wait_for_response(page, f"{server.origin}/assets/cat.svg") == 404
            assert traffic.wait_for_response(page, f"{server.origin}/api/items/1") == 404
    finally:
        context.close()
