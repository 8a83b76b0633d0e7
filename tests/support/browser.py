"""Headless Chromium for browser tests, and a recorder of everything a page loads. Does I/O.

Debian's `/usr/bin/chromium` is driven through Playwright's sync API; no browser is downloaded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

__all__ = ["CHROMIUM", "Traffic", "launch_chromium", "skip_without_chromium"]

CHROMIUM = Path("/usr/bin/chromium")
_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

skip_without_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
)
"""Skip a browser test only where Debian's Chromium is not installed."""


def launch_chromium() -> Iterator[Browser]:
    """Start headless Chromium, yield it, then close it and Playwright (a generator, for fixtures)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Traffic:
    """Every request a page made, and every failure it saw, recorded from Playwright's page events.

    `navigations` holds the URLs of the documents the page's main frame requested: a full load or reload
    adds one, client-side routing (`history.pushState`) adds none.
    """

    requests: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)
    responses: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _in_flight: set[Request] = field(default_factory=set, repr=False)

    def attach(self, page: Page) -> Traffic:
        """Start recording `page`'s traffic; returns self."""
        page.on("request", self._on_request)
        page.on("response", self._on_response)
        page.on("requestfinished", self._on_finished)
        page.on("requestfailed", self._on_failed)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        return self

    def _on_request(self, request: Request) -> None:
        # data: and blob: URLs are made in the page and never go on the network, so they cannot leave it.
        if not request.url.startswith(("data:", "blob:")):
            self.requests.append(request.url)
            self._in_flight.add(request)
        if request.is_navigation_request() and request.frame.parent_frame is None:
            self.navigations.append(request.url)

    def _on_response(self, response: Response) -> None:
        self.responses[response.url] = response.status

    def _on_finished(self, request: Request) -> None:
        self._in_flight.discard(request)

    def _on_failed(self, request: Request) -> None:
        self._in_flight.discard(request)
        self.failed.append(f"{request.url}: {request.failure}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def escaped(self, base: str) -> list[str]:
        """The requests whose URL does not start with `base`."""
        return [url for url in self.requests if not url.startswith(base)]

    def bad_responses(self) -> dict[str, int]:
        """The responses with a 4xx or 5xx status."""
        return {url: status for url, status in self.responses.items() if status >= 400}

    def wait_for_response(self, page: Page, url: str, timeout: float = 10.0) -> int:
        """Wait until a response for `url` has arrived, and return its status.

        Raises:
            AssertionError: No response for `url` arrived in time.
        """
        deadline = time.monotonic() + timeout
        while url not in self.responses:
            if time.monotonic() > deadline:
                raise AssertionError(f"no response for {url}; requests: {self.requests}")
            # Playwright dispatches page events while it waits, not while this thread sleeps.
            page.wait_for_timeout(50)
        return self.responses[url]

    def wait_until_idle(self, page: Page, quiet: float = 0.2, timeout: float = 10.0) -> None:
        """Wait until no request has been in flight for `quiet` seconds.

        Call it before a reload or a new navigation, which would abort what is still loading: Chromium
        fetches the favicon again after each same-document navigation (pushState, Back, Forward).

        Raises:
            AssertionError: Requests were still in flight after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        idle_since = time.monotonic()
        while True:
            now = time.monotonic()
            if self._in_flight:
                idle_since = now
            elif now - idle_since >= quiet:
                return
            if now > deadline:
                raise AssertionError(f"still loading: {sorted(request.url for request in self._in_flight)}")
            page.wait_for_timeout(25)
