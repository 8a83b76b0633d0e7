"""`LocalClient`, the agent's one shared httpx client, and `AiohttpTransport`, which sends its requests
through aiohttp's connection pool. Does network I/O.

The agent replays requests with one shared `httpx.AsyncClient`; this is the transport under it. httpcore,
httpx's own transport, is written in Python down to its HTTP/1.1 state machine (h11) and its locks and
cancel scopes (anyio): about 0.27 ms of CPU per request, a quarter of all a `tunnel up` spends on one.
aiohttp parses HTTP in C (llhttp) and pools connections on the event loop directly: about 0.06 ms.

Written for a proxy, so what goes out is what came in (httpx-aiohttp, a general adapter, re-parses the URL,
which normalises `..` and percent-escapes, and merges repeated headers): the target is sent byte for
byte (but for an empty query, which yarl cannot hold: `/p?` goes out as `/p`), headers in their order
with repeats, no header of aiohttp's own (`Accept`, `Accept-Encoding`, `User-Agent`), no cookie jar,
bodies still content-encoded, no redirects followed. aiohttp's errors become httpx's, so callers see one
set of exceptions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Final

import aiohttp
import httpx
import yarl
from multidict import CIMultiDict

__all__ = ["AiohttpTransport", "LocalClient"]

# aiohttp adds these unless told not to; the agent sends only what the public caller sent.
_SKIP_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent")
# aiohttp's default limit (8190 bytes) refuses heads that browsers, nginx (with large buffers) and httpx
# (h11: 16 KB in all) accept; a long Content-Security-Policy or a few big cookies pass this one.
_MAX_FIELD_BYTES: Final = 64 * 1024
# Idle connections are dropped a little before common servers drop them (uvicorn and Node: 5 s).
_KEEPALIVE_SECONDS: Final = 4.0
_CHUNK_BYTES: Final = 64 * 1024


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Raise aiohttp's failures as the httpx exceptions that say the same thing."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "timed out connecting", request=request) from exc
    except TimeoutError as exc:  # aiohttp's ServerTimeoutError is one
        raise httpx.ReadTimeout(str(exc) or "timed out reading", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
    except aiohttp.ClientResponseError as exc:  # a head aiohttp's parser refused
        raise httpx.RemoteProtocolError(exc.message or str(exc), request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


class _ResponseStream(httpx.AsyncByteStream):
    """An aiohttp response body as httpx reads it; closing it gives the connection back (or drops it, when
    the body was not read to its end)."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            with _as_httpx_errors(self._request):
                async for chunk in self._response.content.iter_chunked(_CHUNK_BYTES):
                    yield chunk
        except BaseException:
            self._response.close()  # broken off or abandoned: that connection cannot carry another request
            raise

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport over one aiohttp session, for replaying requests as they came.

    Args:
        max_connections: Connections open at once, in all (as many requests as may be in flight).
    """

    def __init__(self, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running event loop that aiohttp binds it to.
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=_KEEPALIVE_SECONDS
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            auto_decompress=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),
            max_line_size=_MAX_FIELD_BYTES,
            max_field_size=_MAX_FIELD_BYTES,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None:
            session = self._session = self._open_session()
        url = request.url
        path, _, query = url.raw_path.decode("ascii").partition("?")
        target = yarl.URL.build(
            scheme=url.scheme, host=url.host, port=url.port, path=path, query_string=query, encoded=True
        )
        # Names in lower case (as HTTP/2 and the tunnel protocol carry them): aiohttp merges its session's
        # headers into these case-sensitively, so "X-A" after "x-a" would replace it rather than repeat it.
        # aiohttp frames the body itself: a length for bytes, chunked for a stream of unknown length.
        headers = CIMultiDict(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() != b"transfer-encoding"
        )
        if isinstance(request.stream, httpx.ByteStream):
            data: bytes | httpx.AsyncByteStream | None = request.content or None
        else:
            assert isinstance(request.stream, httpx.AsyncByteStream)
            data = request.stream
        if data is None:
            headers.popall("content-length", None)  # aiohttp sets 0 where a method expects a body
        timeout = request.extensions.get("timeout", {})
        with _as_httpx_errors(request):
            response = await session.request(
                request.method,
                target,
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            )
        version = response.version
        http_version = f"HTTP/{version.major}.{version.minor}" if version else "HTTP/1.1"
        extensions = {"http_version": http_version.encode("ascii")}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, request),
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class LocalClient(httpx.AsyncClient):
    """The agent's one shared `httpx.AsyncClient`: over `AiohttpTransport`, no redirects followed, no
    proxy settings from the environment (the local app is on this machine), and no cookies kept.

    Cookies belong to the public callers and pass through in their headers. A jar shared by every caller
    would only grow with each one's cookies, and httpx builds urllib objects to parse every response into
    its jar (about 25 µs a response, a twentieth of a tunnelled request), so this client's jar takes none.

    Args:
        max_connections: Connections to the local app at most (requests forwarded at once).
        timeout: httpx's timeouts, in seconds.
    """

    def __init__(self, *, max_connections: int, timeout: float) -> None:
        super().__init__(
            timeout=timeout,
            follow_redirects=False,
            transport=AiohttpTransport(max_connections),
            trust_env=False,
        )
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty."""
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise AttributeError("the agent's client keeps no cookies")
