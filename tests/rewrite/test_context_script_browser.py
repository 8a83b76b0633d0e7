"""The tunnel context script in headless Chromium: run-time URLs keep the prefix, other URLs stay as they are.

A threaded HTTP server on loopback serves pages that carry the injected script and records the path of every
request it receives; a second server stands for another origin. Playwright drives Debian's Chromium.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from rewrite.config import RewriteConfig
from rewrite.inject import context_script, context_script_hash, inject_tunnel_context

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
UPSTREAM = "http://127.0.0.1:3000"
PAGE = '<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body><p>x</p></body></html>'


@dataclass
class Site:
    """One loopback HTTP server: the pages it serves and the request paths it has seen."""

    server: ThreadingHTTPServer
    pages: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait_for(self, path: str, timeout: float = 5.0) -> None:
        """Wait until the server has seen a request for `path` (beacons and images arrive on their own)."""
        deadline = time.monotonic() + timeout
        while path not in self.paths:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} never arrived; seen: {self.paths}")
            time.sleep(0.02)


def _start_site() -> tuple[Site, threading.Thread]:
    site: Site

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            site.bodies[self.path] = self.rfile.read(int(self.headers.get("content-length") or 0))
            self._answer()

        def _answer(self) -> None:
            site.paths.append(self.path)
            text, headers = site.pages.get(self.path, ("ok", {"content-type": "text/plain"}))
            body = text.encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.send_header("access-control-allow-origin", "*")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    site = Site(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return site, thread


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Site, Site]]:
    """The tunnel's server (its origin is the public origin) and a server on another origin."""
    started: list[tuple[Site, threading.Thread]] = []
    try:
        started.append(_start_site())
        started.append(_start_site())
        main, other = started[0][0], started[1][0]
        _add_pages(main)
        yield main, other
    finally:
        for site, thread in started:
            site.server.shutdown()
            site.server.server_close()
            thread.join(timeout=5)


def path_config(site: Site) -> RewriteConfig:
    """Path mode under /abc123, with the test server as the public origin."""
    return RewriteConfig(prefix="/abc123", public_origin=site.origin, upstream_origin=UPSTREAM)


def host_config(site: Site) -> RewriteConfig:
    """Host mode: no prefix, so only upstream-origin URLs change."""
    return RewriteConfig(prefix="", public_origin=site.origin, upstream_origin=UPSTREAM, tunnel_id="abc123")


def _add_pages(site: Site) -> None:
    html = {"content-type": "text/html; charset=utf-8"}
    config = path_config(site)
    script = context_script(config)
    site.pages["/abc123/page"] = (inject_tunnel_context(PAGE, config).text, html)
    site.pages["/host/page"] = (inject_tunnel_context(PAGE, host_config(site)).text, html)
    # The same script twice, as on a page that two rewriting passes both injected into, with the wrapped
    # functions captured in between so the test can see that the second run replaced nothing.
    capture = (
        "window.first = {fetch: window.fetch, open: XMLHttpRequest.prototype.open, "
        "src: Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, 'src').set};"
    )
    site.pages["/abc123/twice"] = (
        f"<!doctype html><html><head><script>{script}</script><script>{capture}</script>"
        f"<script>{script}</script></head><body></body></html>",
        html,
    )
    csp = inject_tunnel_context(PAGE, config).text
    site.pages["/abc123/csp"] = (
        csp,
        {**html, "content-security-policy": f"script-src '{context_script_hash(config)}'"},
    )
    site.pages["/abc123/csp-none"] = (csp, {**html, "content-security-policy": "script-src 'none'"})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole module."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser tests")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, sites: tuple[Site, Site]) -> Iterator[Page]:
    """A fresh browser context showing the path-mode page /abc123/page."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(sites[0].origin + "/abc123/page")
        yield page
    finally:
        context.close()


def test_context_object(page: Page, sites: tuple[Site, Site]) -> None:
    """window.__TUNNEL_CONTEXT__ offers the tunnel's values and url(), and cannot be replaced."""
    main, other = sites
    result = page.evaluate(
        """([upstream, other]) => {
            const c = window.__TUNNEL_CONTEXT__;
            window.__TUNNEL_CONTEXT__ = null;
            return {
                same: window.__TUNNEL_CONTEXT__ === c, frozen: Object.isFrozen(c),
                enumerable: Object.keys(window).includes('__TUNNEL_CONTEXT__'),
                tunnelId: c.tunnelId, basePath: c.basePath, publicOrigin: c.publicOrigin,
                base: c.getBaseUrl(),
                urls: ['/x', '/abc123/x', '/abc123', '/abc1234/x', 'x', '../x', '?q', '#f', 'data:,x',
                       location.origin + '/x', upstream + '/x?q#f', other + '/x', 'http://[bad',
                       '//' + location.host + '/x', new URL('/u', location.href), null, 42,
                ].map((u) => c.url(u)),
            };
        }""",
        [UPSTREAM, other.origin],
    )
    assert result["same"]
    assert result["frozen"]
    assert not result["enumerable"]
    assert (result["tunnelId"], result["basePath"]) == ("abc123", "/abc123")
    assert result["publicOrigin"] == result["base"][: -len("/abc123")] == main.origin
    assert result["urls"] == [
        "/abc123/x",
        "/abc123/x",
        "/abc123",
        "/abc123/abc1234/x",
        "x",
        "../x",
        "?q",
        "#f",
        "data:,x",
        main.origin + "/abc123/x",
        main.origin + "/abc123/x?q#f",
        other.origin + "/x",
        "http://[bad",
        main.origin + "/abc123/x",
        main.origin + "/abc123/u",
        None,
        42,
    ]


def test_fetch_keeps_prefix(page: Page, sites: tuple[Site, Site]) -> None:
    """fetch() of a path, a Request (with a body), a same-origin URL or URL object, or an upstream URL."""
    main = sites[0]
    page.evaluate(
        """async (upstream) => {
            await fetch('/api/a');
            await fetch(new Request('/api/b'));
            await fetch(new Request('/api/b-post', {method: 'POST', body: 'payload', headers: {'x-a': '1'}}));
            await fetch(location.origin + '/api/c');
            await fetch(new URL('/api/c-url', location.href));
            await fetch(upstream + '/api/c-upstream');
        }""",
        UPSTREAM,
    )
    for name in ("a", "b", "b-post", "c", "c-url", "c-upstream"):
        assert f"/abc123/api/{name}" in main.paths
        assert f"/api/{name}" not in main.paths
    assert main.bodies["/abc123/api/b-post"] == b"payload"


def test_fetch_leaves_other_urls(page: Page, sites: tuple[Site, Site]) -> None:
    """Relative, already-prefixed, other-origin and data: URLs reach fetch() unchanged."""
    main, other = sites
    texts = page.evaluate(
        """async (other) => [
            await (await fetch('../api/relative-up')).text(),
            await (await fetch('api/relative')).text(),
            await (await fetch('/abc123/api/prefixed')).text(),
            await (await fetch(other + '/api/other')).text(),
            await (await fetch('data:text/plain,inline')).text(),
        ]""",
        other.origin,
    )
    assert texts == ["ok", "ok", "ok", "ok", "inline"]
    assert "/api/relative-up" in main.paths  # a relative URL may leave the prefix: not ours to change
    assert "/abc123/api/relative" in main.paths
    assert "/abc123/api/prefixed" in main.paths
    assert "/abc123/abc123/api/prefixed" not in main.paths
    assert "/api/other" in other.paths
    assert not [path for path in other.paths if path.startswith("/abc123")]


def test_xhr_event_source_and_beacon(page: Page, sites: tuple[Site, Site]) -> None:
    """XMLHttpRequest.open, EventSource and navigator.sendBeacon send absolute paths under the prefix."""
    main = sites[0]
    result = page.evaluate(
        """async () => {
            const xhr = new XMLHttpRequest();
            await new Promise((done) => { xhr.onloadend = done; xhr.open('GET', '/api/d'); xhr.send(); });
            const es = new EventSource('/api/e');
            await new Promise((done) => { es.onerror = done; });
            es.close();
            return {
                xhr: xhr.responseURL, es: es.url,
                esProto: es instanceof EventSource && EventSource.CLOSED === 2,
                beacon: navigator.sendBeacon('/api/f', 'data'),
            };
        }"""
    )
    assert result["xhr"] == main.origin + "/abc123/api/d"
    assert result["es"] == main.origin + "/abc123/api/e"
    assert result["esProto"]
    assert result["beacon"] is True
    main.wait_for("/abc123/api/f")
    assert main.bodies["/abc123/api/f"] == b"data"
    assert "/abc123/api/e" in main.paths
    assert not {"/api/d", "/api/e", "/api/f"} & set(main.paths)


def test_element_properties(page: Page, sites: tuple[Site, Site]) -> None:
    """The src, href, srcset and action setters of elements keep absolute paths under the prefix."""
    main = sites[0]
    result = page.evaluate(
        """async () => {
            const img = document.createElement('img');
            await new Promise((done) => { img.onload = img.onerror = done; img.src = '/img/g.png'; });
            const a = document.createElement('a');
            a.href = '/h';
            const absolute = a.href;
            const hrefs = ['/h', 'rel', 'https://other.example/h', 'mailto:x@example.com'].map((u) => {
                a.href = u; return a.getAttribute('href');
            });
            const img2 = document.createElement('img');
            img2.srcset = '/s1.png 1x, data:image/png;base64,AA,BB 2x,/s3.png 3x';
            const form = document.createElement('form');
            form.action = '/submit';
            const link = document.createElement('link');
            link.href = '/style.css';
            const iframe = document.createElement('iframe');
            iframe.src = '/frame';
            return {hrefs, absolute, srcset: img2.getAttribute('srcset'),
                    action: form.getAttribute('action'), link: link.getAttribute('href'),
                    iframe: iframe.getAttribute('src'), img: img.src};
        }"""
    )
    main.wait_for("/abc123/img/g.png")
    assert result["img"] == main.origin + "/abc123/img/g.png"
    assert result["hrefs"] == ["/abc123/h", "rel", "https://other.example/h", "mailto:x@example.com"]
    assert result["absolute"] == main.origin + "/abc123/h"
    assert result["srcset"] == "/abc123/s1.png 1x, data:image/png;base64,AA,BB 2x,/abc123/s3.png 3x"
    assert result["action"] == "/abc123/submit"
    assert result["link"] == "/abc123/style.css"
    assert result["iframe"] == "/abc123/frame"


def test_set_attribute(page: Page, sites: tuple[Site, Site]) -> None:
    """setAttribute maps URL attributes of URL-bearing elements and leaves every other attribute alone."""
    main = sites[0]
    result = page.evaluate(
        """async () => {
            const script = document.createElement('script');
            script.setAttribute('src', '/i.js');
            await new Promise((done) => {
                script.onload = script.onerror = done;
                document.head.append(script);
            });
            const a = document.createElement('a');
            a.setAttribute('HREF', '/upper');
            a.setAttribute('title', '/not-a-url');
            const div = document.createElement('div');
            div.setAttribute('href', '/div');
            const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
            use.setAttribute('href', '/sprite.svg#icon');
            const img = document.createElement('img');
            img.setAttribute('srcset', '/a.png 1x, b.png 2x');
            return [script.getAttribute('src'), a.getAttribute('href'), a.getAttribute('title'),
                    div.getAttribute('href'), use.getAttribute('href'), img.getAttribute('srcset')];
        }"""
    )
    assert result == [
        "/abc123/i.js",
        "/abc123/upper",
        "/not-a-url",
        "/div",
        "/abc123/sprite.svg#icon",
        "/abc123/a.png 1x, b.png 2x",
    ]
    assert "/abc123/i.js" in main.paths


def test_history(page: Page) -> None:
    """history.pushState and replaceState keep absolute paths under the prefix and leave relative ones."""
    result = page.evaluate(
        """() => {
            history.pushState(null, '', '/route');
            const pushed = location.pathname;
            history.replaceState({a: 1}, '', '?q=1');
            history.pushState(null, '');
            return [pushed, location.pathname + location.search, history.length > 1];
        }"""
    )
    assert result == ["/abc123/route", "/abc123/route?q=1", True]


def test_websocket(page: Page, sites: tuple[Site, Site]) -> None:
    """WebSocket URLs of the page's host gain the prefix; the constructor still works as the original."""
    main, other = sites
    result = page.evaluate(
        """async (otherHost) => {
            const urls = [];
            for (const url of ['ws://' + location.host + '/ws/x', '/ws/rel', 'ws://' + otherHost + '/ws/o']) {
                const ws = new WebSocket(url);
                urls.push(ws.url);
                await new Promise((done) => { ws.onclose = done; });
            }
            class Sub extends WebSocket {}
            const sub = new Sub('ws://' + location.host + '/ws/sub');
            sub.close();
            const plain = new WebSocket('ws://' + location.host + '/ws/p');
            plain.close();
            let callError = '';
            try { WebSocket('/x'); } catch (e) { callError = e.name; }
            return {urls, sub: sub instanceof Sub && sub instanceof WebSocket, subUrl: sub.url,
                    instance: plain instanceof WebSocket && plain.constructor === WebSocket,
                    open: WebSocket.OPEN, closed: plain.CLOSING, callError};
        }""",
        other.origin.removeprefix("http://"),
    )
    host = main.origin.removeprefix("http://")
    other_host = other.origin.removeprefix("http://")
    assert result["urls"] == [
        f"ws://{host}/abc123/ws/x",
        f"ws://{host}/abc123/ws/rel",
        f"ws://{other_host}/ws/o",
    ]
    assert result["sub"]
    assert result["subUrl"] == f"ws://{host}/abc123/ws/sub"
    assert result["instance"]
    assert (result["open"], result["closed"], result["callError"]) == (1, 2, "TypeError")
    assert "/abc123/ws/x" in main.paths
    assert "/ws/o" in other.paths


def test_window_open(page: Page) -> None:
    """window.open with an absolute path opens the page under the prefix."""
    with page.expect_popup() as popup_info:
        page.evaluate("() => { window.open('/popup'); }")
    popup = popup_info.value
    popup.wait_for_load_state()
    assert popup.url.endswith("/abc123/popup")
    popup.close()


def test_run_twice_wraps_once(browser: Browser, sites: tuple[Site, Site]) -> None:
    """A page holding the script twice wraps each function once and prefixes once."""
    main = sites[0]
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(main.origin + "/abc123/twice")
        result = page.evaluate(
            """async () => {
                await fetch('/api/twice');
                const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, 'src').set;
                return [window.first.fetch === window.fetch,
                        window.first.open === XMLHttpRequest.prototype.open,
                        window.first.src === src, document.querySelectorAll('script').length];
            }"""
        )
    finally:
        context.close()
    assert result == [True, True, True, 3]
    assert "/abc123/api/twice" in main.paths
    assert "/abc123/abc123/api/twice" not in main.paths


def test_host_mode(browser: Browser, sites: tuple[Site, Site]) -> None:
    """In host mode paths stay as they are and only upstream-origin URLs move to the public origin."""
    main = sites[0]
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(main.origin + "/host/page")
        result = page.evaluate(
            """async (upstream) => {
                await fetch('/api/host-a');
                await fetch(upstream + '/api/host-up');
                const c = window.__TUNNEL_CONTEXT__;
                return [c.basePath, c.tunnelId, c.getBaseUrl() === location.origin, c.url('/x'),
                        c.url(location.origin + '/x'), c.url('ws://localhost:3000/ws')];
            }""",
            UPSTREAM,
        )
    finally:
        context.close()
    host = main.origin.removeprefix("http://")
    assert result == ["", "abc123", True, "/x", main.origin + "/x", f"ws://{host}/ws"]
    assert "/api/host-a" in main.paths
    assert "/api/host-up" in main.paths


def test_runs_under_csp_with_its_hash(browser: Browser, sites: tuple[Site, Site]) -> None:
    """A policy allowing only the script's hash runs it; a policy allowing no script blocks it."""
    main = sites[0]
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(main.origin + "/abc123/csp")
        allowed = page.evaluate("() => typeof window.__TUNNEL_CONTEXT__")
        page.goto(main.origin + "/abc123/csp-none")
        blocked = page.evaluate("() => typeof window.__TUNNEL_CONTEXT__")
    finally:
        context.close()
    assert (allowed, blocked) == ("object", "undefined")
