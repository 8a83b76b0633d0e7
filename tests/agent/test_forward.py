"""Tests for agent/forward.py: forward() against httpx.MockTransport, and against a real app on loopback."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from agent.forward import HOP_BY_HOP_HEADERS, forward, strip_hop_by_hop
from tests.support.servers import closed_port, serve_in_thread
from transport.messages import ErrorMessage, HttpRequest, HttpResponse, new_request_id

ORIGIN = "http://127.0.0.1:3000"
Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


class RawStream(httpx.AsyncByteStream):
    """A response body that is streamed, as from a real connection (content= would be read and decoded)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._data:
            yield self._data


def streamed(status: int, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> httpx.Response:
    """A response whose body arrives as a stream, the way a network transport gives it."""
    return httpx.Response(status, headers=headers, stream=RawStream(body))


def make_request(
    uri: str = "/", *, method: str = "GET", headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
) -> HttpRequest:
    """An HttpRequest as the gateway sends it."""
    return HttpRequest(new_request_id(), method, uri, headers, body)


def run_forward(
    handler: Handler, request: HttpRequest, *, timeout: float = 5.0, follow_redirects: bool = False
) -> HttpResponse | ErrorMessage:
    """Forward one request through a client whose transport is `handler`."""

    async def scenario() -> HttpResponse | ErrorMessage:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport, follow_redirects=follow_redirects) as client:
            return await forward(request, client, local_origin=ORIGIN, timeout=timeout)

    return asyncio.run(scenario())


def test_request_is_replayed_as_sent() -> None:
    """Method, raw query, body and end-to-end headers reach the local app unchanged, and nothing else."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return streamed(201, body=b"made")

    headers = (
        ("host", "abc.gw.example"),
        ("x-forwarded-prefix", "/abc"),
        ("cookie", "a=1"),
        ("x-multi", "1"),
        ("x-multi", "2"),
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "hop"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("proxy-authorization", "Basic x"),
        ("content-length", "999"),
    )
    request = make_request("/api/a%2Fb?x=%2F&y=a+b&z", method="PATCH", headers=headers, body=b"payload")
    answer = run_forward(handler, request)
    assert isinstance(answer, HttpResponse)
    assert answer.status_code == 201
    assert answer.body == b"made"
    assert answer.request_id == request.request_id
    (sent,) = seen
    assert sent.method == "PATCH"
    assert sent.url.raw_path == b"/api/a%2Fb?x=%2F&y=a+b&z"
    assert str(sent.url).startswith(ORIGIN + "/")
    assert sent.content == b"payload"
    assert sent.headers.multi_items() == [
        ("host", "abc.gw.example"),
        ("x-forwarded-prefix", "/abc"),
        ("cookie", "a=1"),
        ("x-multi", "1"),
        ("x-multi", "2"),
        ("content-length", "7"),
    ]


def test_non_ascii_target_is_percent_encoded_as_utf8() -> None:
    """A target with characters outside ASCII goes out percent-encoded as UTF-8, the rest untouched."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return streamed(204)

    answer = run_forward(handler, make_request("/caf\u00e9?q=\u00e9&r=%41"))
    assert isinstance(answer, HttpResponse)
    assert seen[0].url.raw_path == b"/caf%C3%A9?q=%C3%A9&r=%41"


def test_redirects_come_back_as_they_are() -> None:
    """A 302 is answered as a 302 with its Location, even by a client that would follow redirects."""
    calls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return streamed(302, [("Location", "/login")])

    answer = run_forward(handler, make_request("/private"), follow_redirects=True)
    assert isinstance(answer, HttpResponse)
    assert answer.status_code == 302
    assert ("location", "/login") in answer.headers
    assert calls == ["/private"]


def test_body_stays_content_encoded_and_headers_stay_multi_valued() -> None:
    """A gzip body comes back still gzipped, and two Set-Cookie headers stay two, names in lower case."""
    compressed = gzip.compress(b"<html>hello</html>" * 100)

    async def handler(request: httpx.Request) -> httpx.Response:
        return streamed(
            200,
            [
                ("Content-Type", "text/html"),
                ("Content-Encoding", "gzip"),
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; Path=/"),
                ("Connection", "close"),
            ],
            compressed,
        )

    answer = run_forward(handler, make_request("/"))
    assert isinstance(answer, HttpResponse)
    assert answer.body == compressed
    assert [value for name, value in answer.headers if name == "set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    assert ("content-encoding", "gzip") in answer.headers
    assert all(name == name.lower() for name, _ in answer.headers)
    assert not any(name in HOP_BY_HOP_HEADERS for name, _ in answer.headers)


def test_processing_time_is_measured() -> None:
    """processing_time_ms covers the time the local app took."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.06)
        return streamed(200)

    answer = run_forward(handler, make_request("/"))
    assert isinstance(answer, HttpResponse)
    assert 50 <= answer.processing_time_ms < 5000


@pytest.mark.parametrize(
    ("exception", "code"),
    [
        (httpx.ConnectError("refused"), "local_service_unavailable"),
        (httpx.ConnectTimeout("slow connect"), "timeout"),
        (httpx.ReadTimeout("slow read"), "timeout"),
        (httpx.RemoteProtocolError("garbage"), "internal_error"),
        (RuntimeError("boom"), "internal_error"),
    ],
)
def test_failures_become_error_messages(exception: Exception, code: str) -> None:
    """Each kind of local failure is an ErrorMessage for the request, with the code the gateway maps."""

    async def handler(request: httpx.Request) -> httpx.Response:
        raise exception

    request = make_request("/")
    answer = run_forward(handler, request)
    assert isinstance(answer, ErrorMessage)
    assert answer.code == code
    assert answer.request_id == request.request_id


def test_slow_app_times_out_within_the_timeout() -> None:
    """An app slower than the timeout gives a timeout error, soon after the timeout, not after the app."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200)

    started = time.monotonic()
    answer = run_forward(handler, make_request("/"), timeout=0.2)
    assert isinstance(answer, ErrorMessage)
    assert answer.code == "timeout"
    assert time.monotonic() - started < 3


def test_target_that_is_not_a_path_is_an_invalid_request() -> None:
    """A target such as '*' cannot be replayed and is reported as invalid_request, without sending."""
    calls: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    answer = run_forward(handler, make_request("*", method="OPTIONS"))
    assert isinstance(answer, ErrorMessage)
    assert answer.code == "invalid_request"
    assert calls == []


def test_strip_hop_by_hop_drops_named_and_proxy_headers() -> None:
    """Headers named by Connection, Proxy-* and the fixed hop-by-hop set are dropped, order kept."""
    headers = (
        ("a", "1"),
        ("connection", "X-Private , upgrade"),
        ("x-private", "p"),
        ("upgrade", "websocket"),
        ("proxy-authenticate", "Basic"),
        ("te", "trailers"),
        ("b", "2"),
        ("a", "3"),
    )
    assert strip_hop_by_hop(headers) == (("a", "1"), ("b", "2"), ("a", "3"))


# A real local app on loopback -----------------------------------------------------------------------------


class LocalApp:
    """A starlette app standing in for the developer's app, with counters the tests can read."""

    def __init__(self) -> None:
        self.big = bytes(range(256)) * 4096  # 1 MiB, every byte value
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = threading.Event()
        self.app = Starlette(
            routes=[
                Route("/echo", self.echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
                Route("/big", self.send_big),
                Route("/upload", self.upload, methods=["POST"]),
                Route("/slow", self.slow),
                Route("/hold", self.hold),
                Route("/redirect", self.redirect),
                Route("/cookies", self.cookies),
                Route("/gzip", self.gzipped),
            ]
        )

    async def echo(self, request: Request) -> Response:
        body = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw],
                "body": body.decode("latin-1"),
            }
        )

    async def send_big(self, request: Request) -> Response:
        return Response(self.big, media_type="application/octet-stream")

    async def upload(self, request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    async def slow(self, request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("s", "5")))
        return Response(b"late")

    async def hold(self, request: Request) -> Response:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(float(request.query_params.get("s", "0.2")))
        finally:
            with self._lock:
                self.in_flight -= 1
        return Response(b"held")

    async def redirect(self, request: Request) -> Response:
        return RedirectResponse("/echo", status_code=302)

    async def cookies(self, request: Request) -> Response:
        response = Response(b"ok")
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    async def gzipped(self, request: Request) -> Response:
        return Response(
            gzip.compress(b"compressible " * 1000),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
        )


@pytest.mark.integration
def test_forward_to_a_real_app_on_loopback() -> None:
    """Against a real app: raw query echoed, redirect, gzip and two cookies kept, 1 MiB body whole."""
    local = LocalApp()

    async def scenario(origin: str) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:

            async def call(request: HttpRequest) -> HttpResponse:
                answer = await forward(request, client, local_origin=origin, timeout=5)
                assert isinstance(answer, HttpResponse), answer
                return answer

            echo = await call(
                make_request("/echo?b=%2F&a=1+2", method="POST", headers=(("x-a", "1"),), body=b"hi")
            )
            data = json.loads(echo.body)
            assert (data["method"], data["query"], data["body"]) == ("POST", "b=%2F&a=1+2", "hi")
            assert ["x-a", "1"] in data["headers"]
            assert not any(name in ("user-agent", "accept-encoding") for name, _ in data["headers"])
            redirect = await call(make_request("/redirect"))
            assert redirect.status_code == 302
            assert ("location", "/echo") in redirect.headers
            zipped = await call(make_request("/gzip", headers=(("accept-encoding", "gzip"),)))
            assert gzip.decompress(zipped.body) == b"compressible " * 1000
            cookies = await call(make_request("/cookies"))
            assert len([1 for name, _ in cookies.headers if name == "set-cookie"]) == 2
            big = await call(make_request("/big"))
            assert big.body == local.big

    with serve_in_thread(local.app) as server:
        asyncio.run(scenario(server.origin))


@pytest.mark.integration
def test_closed_port_is_local_service_unavailable() -> None:
    """Nothing listening on the local port gives local_service_unavailable, quickly."""

    async def scenario() -> HttpResponse | ErrorMessage:
        async with httpx.AsyncClient(trust_env=False) as client:
            origin = f"http://127.0.0.1:{closed_port()}"
            return await forward(make_request("/"), client, local_origin=origin, timeout=5)

    answer = asyncio.run(scenario())
    assert isinstance(answer, ErrorMessage)
    assert answer.code == "local_service_unavailable"


@pytest.mark.integration
def test_slow_real_app_times_out() -> None:
    """A real app that answers after the timeout gives a timeout error."""
    local = LocalApp()

    async def scenario(origin: str) -> HttpResponse | ErrorMessage:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await forward(make_request("/slow?s=3"), client, local_origin=origin, timeout=0.3)

    with serve_in_thread(local.app) as server:
        answer = asyncio.run(scenario(server.origin))
    assert isinstance(answer, ErrorMessage)
    assert answer.code == "timeout"


def test_host_header_can_name_the_local_app() -> None:
    """With a host_header, the local app receives that Host instead of the public one, only once."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return streamed(200)

    async def scenario() -> None:
        request = make_request("/", headers=(("host", "abc.gw.example"), ("accept", "*/*")))
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await forward(request, client, local_origin=ORIGIN, timeout=5, host_header="127.0.0.1:3000")

    asyncio.run(scenario())
    (sent,) = seen
    assert sent.headers.get_list("host") == ["127.0.0.1:3000"]
    assert sent.headers["accept"] == "*/*"
