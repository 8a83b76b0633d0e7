"""The mitmproxy example, run for real: mitmdump with the addon in front of a small app on loopback."""

from __future__ import annotations

import gzip
import http.server
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = ROOT / ".venv-mitmproxy" / "bin" / "mitmdump"
ADDON = ROOT / "examples" / "mitmproxy_addon.py"
PREFIX = "/abc123"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not MITMDUMP.exists(),
        reason=f"{MITMDUMP.relative_to(ROOT)} is missing: `make test` builds the mitmproxy venv",
    ),
]

PAGE = b"""<!doctype html>
<html><head><title>App</title><link rel="stylesheet" href="/static/app.css"></head>
<body><a href="/docs">Docs</a> <img src="/img/a.png" alt=""> <a href="https://example.org/x">out</a></body>
</html>
"""
STYLESHEET = b"body { background: url(/img/a.png) no-repeat; }\n"


@dataclass
class Upstream:
    """A small app on loopback and what it was asked for."""

    port: int
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)


class _AppHandler(http.server.BaseHTTPRequestHandler):
    """Serves a page with absolute links, a gzip-encoded stylesheet and a redirect that sets a cookie."""

    upstream: Upstream

    def do_GET(self) -> None:
        self.upstream.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path == "/":
            self._send(200, PAGE, [("Content-Type", "text/html; charset=utf-8")])
        elif self.path == "/static/app.css":
            body = gzip.compress(STYLESHEET)
            self._send(200, body, [("Content-Type", "text/css"), ("Content-Encoding", "gzip")])
        elif self.path == "/redirect":
            self._send(302, b"", [("Location", "/login"), ("Set-Cookie", "s=1; Path=/")])
        else:
            self._send(404, b"not here\n", [("Content-Type", "text/plain")])

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mitmdump exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"mitmdump did not listen on {port} within {timeout} s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """The app, served from a thread on a free loopback port."""
    state = Upstream(port=0)
    handler = type("AppHandler", (_AppHandler,), {"upstream": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """mitmdump in reverse mode with the addon, in front of the app; yields the public origin."""
    tmp_path = tmp_path_factory.mktemp("mitmdump")
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    log = tmp_path / "mitmdump.log"
    command = [
        str(MITMDUMP),
        "--mode", f"reverse:http://127.0.0.1:{upstream.port}@127.0.0.1:{port}",
        "-s", str(ADDON),
        "--set", f"tunnel_prefix={PREFIX}",
        "--set", f"public_origin={origin}",
        "--set", f"confdir={tmp_path / 'mitmproxy'}",  # its CA certificates go here, not into ~/.mitmproxy
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait_for_port(port, process, log)
        yield origin
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def client(proxy: str) -> Iterator[httpx.Client]:
    """An HTTP client for the public origin that ignores proxy settings from the environment."""
    with httpx.Client(base_url=proxy, trust_env=False, timeout=10) as http_client:
        yield http_client


def test_page_links_carry_the_prefix(client: httpx.Client, upstream: Upstream, proxy: str) -> None:
    """The page's absolute links come back under the prefix, and the app saw the request without it."""
    response = client.get(f"{PREFIX}/")
    assert response.status_code == 200
    assert 'href="/abc123/static/app.css"' in response.text
    assert 'href="/abc123/docs"' in response.text
    assert 'src="/abc123/img/a.png"' in response.text
    assert 'href="https://example.org/x"' in response.text
    assert int(response.headers["content-length"]) == len(response.content)
    path, headers = upstream.seen[-1]
    assert path == "/"
    assert headers["x-forwarded-prefix"] == PREFIX
    assert headers["x-forwarded-host"] == proxy.removeprefix("http://")
    assert headers["host"] == f"127.0.0.1:{upstream.port}"


def test_gzip_stylesheet_is_rewritten_and_stays_gzip(client: httpx.Client, upstream: Upstream) -> None:
    """The gzip-encoded stylesheet goes out gzip-encoded with its url() under the prefix."""
    with client.stream("GET", f"{PREFIX}/static/app.css", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) == len(raw)
    assert b"url(/abc123/img/a.png)" in gzip.decompress(raw)
    assert upstream.seen[-1][0] == "/static/app.css"


def test_redirect_and_cookie_stay_under_the_prefix(client: httpx.Client) -> None:
    """A redirect to /login points to /abc123/login and its cookie's Path becomes /abc123."""
    response = client.get(f"{PREFIX}/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/abc123/login"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("s=1")
    assert "Path=/abc123" in cookie
    assert "Path=/;" not in cookie + ";"


def test_path_outside_the_prefix_is_404(client: httpx.Client, upstream: Upstream) -> None:
    """A path outside the prefix is answered 404 by the proxy and never reaches the app."""
    before = len(upstream.seen)
    response = client.get("/elsewhere/")
    assert response.status_code == 404
    assert "/abc123/" in response.text
    assert len(upstream.seen) == before
