"""Swagger UI and the SPA fixture through `tunnel up` (the real CLI, in a subprocess), in headless Chromium,
in path mode (`http://127.0.0.1:<gw>/<id>/`) and host mode (`http://<id>.localhost:<gw>/`).

Issue 5: the page works, no request leaves the tunnel, and the SPA's client-side navigation and deep-link
reload work too. Chromium resolves `*.localhost` to loopback itself, so host mode needs no DNS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Page, expect

from agent.sample_app import create_app
from agent.sample_spa import create_spa_app
from tests.support.browser import Traffic, launch_chromium, skip_without_chromium
from tests.support.cli import RunningTunnel, start_tunnel
from tests.support.servers import RunningServer, serve_in_thread

pytestmark = [pytest.mark.browser, skip_without_chromium]

SPA_ROOT = Path(__file__).resolve().parents[2] / "fixtures" / "spa"

Mode = Literal["path", "host"]
MODES: tuple[Mode, ...] = ("path", "host")


@dataclass(frozen=True, slots=True)
class Exposed:
    """A local app on loopback and the `tunnel up` in front of it."""

    local: RunningServer
    tunnel: RunningTunnel

    @property
    def tunnel_id(self) -> str:
        """The id the gateway gave the tunnel."""
        return str(self.tunnel.ready["tunnel_id"])

    def base(self, mode: Mode) -> str:
        """The tunnel's public root in `mode`, with a trailing slash: all the page loads must be under it."""
        return str(self.tunnel.ready[f"{mode}_url"]).rstrip("/") + "/"

    def prefix(self, mode: Mode) -> str:
        """The path the app's own paths get in `mode`: `/<id>` in path mode, nothing in host mode."""
        return f"/{self.tunnel_id}" if mode == "path" else ""


def _expose(app: Any) -> Iterator[Exposed]:
    """Serve `app` on loopback, run `tunnel up` in front of it, and stop both afterwards; the tunnel must
    exit with status 0."""
    with serve_in_thread(app) as local:
        running = start_tunnel(["up", str(local.port), "--gateway-port", "0", "--timeout", "10"])
        try:
            yield Exposed(local, running)
        finally:
            assert running.stop() == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    yield from launch_chromium()


@pytest.fixture(scope="module")
def pet_store() -> Iterator[Exposed]:
    """The sample pet store (FastAPI, self-hosted Swagger UI) behind `tunnel up`."""
    yield from _expose(create_app())


@pytest.fixture(scope="module")
def spa() -> Iterator[Exposed]:
    """The SPA fixture and its API behind `tunnel up`."""
    yield from _expose(create_spa_app(SPA_ROOT))


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in a fresh context (no cache or cookies shared between tests)."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def _assert_stayed_inside(traffic: Traffic, exposed: Exposed, mode: Mode) -> None:
    """Every request went to the tunnel (under `/<id>/` in path mode), none to the bare gateway root or the
    local app's port; nothing failed, nothing answered 4xx/5xx, and the console stayed clean."""
    assert traffic.requests, "the page made no request at all"
    assert traffic.escaped(exposed.base(mode)) == []
    assert [url for url in traffic.requests if f":{exposed.local.port}/" in url] == []
    assert traffic.failed == []
    assert traffic.bad_responses() == {}
    assert traffic.errors == []


@pytest.mark.parametrize("mode", MODES)
def test_swagger_ui_try_it_out(pet_store: Exposed, page: Page, mode: Mode) -> None:
    """Swagger UI renders through the tunnel, "Try it out" and "Execute" on GET /api/items/{item_id} show
    200 with the pet's JSON, and every request the page made stayed inside the tunnel."""
    base = pet_store.base(mode)
    traffic = Traffic().attach(page)

    page.goto(base + "docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Pet Store", timeout=15_000)
    expect(page.locator(".opblock")).to_have_count(5)  # every operation of the schema is listed
    operation = page.locator("#operations-items-get_item_api_items__item_id__get")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator("input[placeholder='item_id']").fill("2")
    operation.locator("button.execute").click()

    responses = operation.locator(".live-responses-table tbody")
    expect(responses.locator(".response-col_status")).to_have_text("200", timeout=15_000)
    body = responses.locator(".response-col_description .microlight").first
    expect(body).to_contain_text('"name": "Tom"')
    expect(body).to_contain_text('"kind": "cat"')
    # Swagger UI shows the URL it fetched: the tunnel's, with the prefix in path mode.
    expect(operation.locator(".request-url")).to_contain_text(f"{base}api/items/2")

    assert traffic.wait_for_response(page, base + "api/items/2") == 200
    for path in (
        "openapi.json",
        "static/swagger-ui/swagger-ui-bundle.js",
        "static/swagger-ui/swagger-ui.css",
    ):
        assert traffic.responses.get(base + path) == 200, path
    _assert_stayed_inside(traffic, pet_store, mode)


@pytest.mark.parametrize("mode", MODES)
def test_spa_works_through_the_tunnel(spa: Exposed, page: Page, mode: Mode) -> None:
    """The SPA renders its fetch and XHR data, its CSS url() images and run-time image load, clicking About
    routes in the page (URL and view change, the lazy chunk loads, no new document), Back returns, and
    reloading the deep link /about serves the app, which shows the About view."""
    base = spa.base(mode)
    prefix = spa.prefix(mode)
    traffic = Traffic().attach(page)

    page.goto(base)
    expect(page.locator("#items-count")).to_have_text("3 items")  # fetch('/api/items')
    expect(page.locator("#item-2")).to_have_text("Tom (cat)")
    expect(page.locator("#item-detail")).to_have_text("Rex")  # fetch of a URL built at run time
    expect(page.locator("#status")).to_have_text("ok")  # XMLHttpRequest
    expect(page.locator("#runtime-img")).to_have_attribute("data-loaded", "true")
    expect(page.locator("#route")).to_have_text("home")
    for path in ("app.js", "modules/render.js", "styles.css", "assets/hero.svg", "assets/cat.svg"):
        assert traffic.wait_for_response(page, base + path) == 200, path  # hero.svg: the CSS url()
    assert traffic.navigations == [base]

    # Client-side navigation: a marker on window survives only if the document is not reloaded.
    page.evaluate("window.__stillTheSamePage = true")
    page.locator("#nav-about").click()
    expect(page.locator("#route")).to_have_text("about")
    expect(page.locator("#about-text")).to_have_attribute("data-chunk", "about")  # the lazy chunk ran
    expect(page.locator("#view-home")).to_be_hidden()
    assert page.evaluate("location.pathname") == f"{prefix}/about"
    assert traffic.wait_for_response(page, base + "chunks/about.js") == 200
    assert page.evaluate("window.__stillTheSamePage") is True
    assert traffic.navigations == [base]

    page.go_back()
    expect(page.locator("#route")).to_have_text("home")
    assert page.evaluate("location.pathname") == f"{prefix}/"
    page.go_forward()
    expect(page.locator("#route")).to_have_text("about")
    assert page.evaluate("window.__stillTheSamePage") is True

    # Deep-link reload: the document at /about is requested from the app, which answers with index.html.
    traffic.wait_until_idle(page)  # a reload would abort the favicon Chromium fetches after Forward
    page.reload()
    expect(page.locator("#route")).to_have_text("about")
    expect(page.locator("#about-text")).to_have_attribute("data-chunk", "about")
    expect(page.locator("#items-count")).to_have_text("3 items")
    assert page.evaluate("window.__stillTheSamePage === undefined")
    assert page.evaluate("location.pathname") == f"{prefix}/about"
    assert traffic.navigations == [base, base + "about"]
    _assert_stayed_inside(traffic, spa, mode)
