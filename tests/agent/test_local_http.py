"""Tests for agent/local_http.py: the agent's httpx client over aiohttp, against a raw HTTP server on loopback
that records the bytes it gets and answers with the bytes it is given."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.local_http import AiohttpTransport, LocalClient
from tests.support.servers import closed_port


@dataclass
class RawServer:
    """Answers each request on a connection with `answer(head)`; records every request's head and body."""

    answer: Callable[[bytes], Awaitable[bytes | None]]
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0
    close_after: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                self.heads.append(head)
                self.bodies.append(await _read_body(reader, head))
                reply = await self.answer(head)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    return
        finally:
            writer.close()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    lines = head.lower().split(b"\r\n")
    length = next((line[15:].strip() for line in lines if line.startswith(b"content-length:")), None)
    if length is not None:
        return await reader.readexactly(int(length))
    if b"transfer-encoding: chunked" not in lines:
        return b""
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        body += await reader.readexactly(size + 2)
        if size == 0:
            return body[:-2]
        body = body[:-2]


def reply(body: bytes = b"ok", *headers: str, status: str = "200 OK") -> Callable[[bytes], Awaitable[bytes]]:
    async def answer(head: bytes) -> bytes:
        lines = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    return answer


async def serving(server: RawServer) -> tuple[asyncio.Server, str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    return listener, f"http://127.0.0.1:{port}"


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


def client() -> httpx.AsyncClient:
    """The agent's client."""
    return LocalClient(max_connections=8, timeout=5)


def test_the_target_and_headers_go_out_as_they_came() -> None:
    async def test() -> None:
        server = RawServer(reply())
        listener, origin = await serving(server)
        async with listener, client() as http:
            # httpx itself resolves "..", before the transport; escapes and the query are the transport's.
            url = httpx.URL(origin).copy_with(raw_path=b"/b;v=1/%2f%7e/%41?q=%2F&x=a+b&&y=%zz")
            request = httpx.Request(
                "GET",
                url,
                headers=[("host", "public.example"), ("x-dup", "1"), ("X-Dup", "2"), ("cookie", "a=1")],
            )
            response = await http.send(request)
        assert response.status_code == 200
        assert response.content == b"ok"
        request_line, *header_lines = server.heads[0].decode("latin-1").split("\r\n")
        assert request_line == "GET /b;v=1/%2f%7e/%41?q=%2F&x=a+b&&y=%zz HTTP/1.1"
        names = [line.split(":", 1)[0].lower() for line in header_lines if line]
        # No header of aiohttp's own: no Accept, Accept-Encoding or User-Agent the caller did not send.
        assert not {"accept", "accept-encoding", "user-agent"} & set(names)
        assert [line for line in header_lines if line.lower().startswith("x-dup")] == ["x-dup: 1", "x-dup: 2"]
        assert "host: public.example" in header_lines

    run(test)


def test_repeated_response_headers_and_an_encoded_body_are_kept() -> None:
    async def test() -> None:
        packed = gzip.compress(b"hello " * 100)
        server = RawServer(reply(packed, "content-encoding: gzip", "set-cookie: a=1", "set-cookie: b=2"))
        listener, origin = await serving(server)
        async with listener, client() as http:
            response = await http.send(httpx.Request("GET", origin + "/"), stream=True)
            raw = b"".join([piece async for piece in response.aiter_raw()])
            await response.aclose()
            # Cookies are the public caller's business: the shared client keeps none to send later.
            await http.send(httpx.Request("GET", origin + "/again"))
        assert raw == packed  # still gzip: the gateway's rewriter decodes what it reads
        assert not http.cookies  # and httpx's jar stayed empty too
        with pytest.raises(AttributeError):
            http.cookies = {"a": "1"}
        assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert b"cookie" not in server.heads[1].lower()

    run(test)


def test_a_long_head_is_accepted() -> None:
    async def test() -> None:
        policy = "default-src 'self'; " + "script-src 'sha256-" + "A" * 20_000 + "'"
        server = RawServer(reply(b"ok", f"content-security-policy: {policy}"))
        listener, origin = await serving(server)
        async with listener, client() as http:
            response = await http.send(httpx.Request("GET", origin + "/", headers={"x-big": "b" * 20_000}))
        assert response.headers["content-security-policy"] == policy
        assert b"b" * 20_000 in server.heads[0]

    run(test)


@pytest.mark.parametrize("declared", [True, False])
def test_a_streamed_upload_goes_out_with_its_length_or_chunked(declared: bool) -> None:
    async def test() -> None:
        server = RawServer(reply())
        listener, origin = await serving(server)
        pieces = [bytes([n]) * 70_000 for n in range(5)]

        async def content() -> AsyncIterator[bytes]:
            for piece in pieces:
                await asyncio.sleep(0)
                yield piece

        headers = [("content-length", str(350_000))] if declared else []
        async with listener, client() as http:
            await http.send(httpx.Request("PUT", origin + "/up", headers=headers, content=content()))
        assert server.bodies[0] == b"".join(pieces)
        head = server.heads[0].lower()
        if declared:
            assert b"content-length: 350000" in head
            assert b"transfer-encoding" not in head
        else:
            assert b"transfer-encoding: chunked" in head
            assert b"content-length" not in head

    run(test)


def test_bodies_and_their_absence() -> None:
    async def test() -> None:
        server = RawServer(reply())
        listener, origin = await serving(server)
        async with listener, client() as http:
            await http.send(httpx.Request("POST", origin + "/", content=b"abc"))
            await http.send(httpx.Request("POST", origin + "/"))
            await http.send(httpx.Request("GET", origin + "/"))
        assert server.bodies == [b"abc", b"", b""]
        assert b"content-length: 3" in server.heads[0].lower()
        assert b"content-length: 0" in server.heads[1].lower()  # a POST says it has no body
        assert b"content-length" not in server.heads[2].lower()

    run(test)


def test_connections_are_reused_and_a_half_read_one_is_not() -> None:
    async def test() -> None:
        server = RawServer(reply(b"x" * 300_000))
        listener, origin = await serving(server)
        async with listener, client() as http:
            for _ in range(3):
                assert len((await http.send(httpx.Request("GET", origin + "/"))).content) == 300_000
            assert server.connections == 1
            response = await http.send(httpx.Request("GET", origin + "/"), stream=True)
            async for _ in response.aiter_raw():
                break
            await response.aclose()  # the rest of the body is still on that connection: it must go
            assert len((await http.send(httpx.Request("GET", origin + "/"))).content) == 300_000
            assert server.connections == 2

    run(test)


def test_refused_connection_is_a_connect_error() -> None:
    async def test() -> None:
        async with client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.send(httpx.Request("GET", f"http://127.0.0.1:{closed_port()}/"))

    run(test)


def test_a_silent_server_is_a_read_timeout() -> None:
    async def test() -> None:
        async def never(head: bytes) -> bytes:
            await asyncio.sleep(30)
            return b""

        listener, origin = await serving(RawServer(never))
        async with listener, client() as http:
            request = httpx.Request("GET", origin + "/", extensions={"timeout": httpx.Timeout(0.3).as_dict()})
            with pytest.raises(httpx.ReadTimeout):
                await http.send(request)

    run(test)


def test_a_server_that_hangs_up_or_talks_nonsense_is_a_protocol_error() -> None:
    async def test() -> None:
        async def hang_up(head: bytes) -> None:
            return None

        async def nonsense(head: bytes) -> bytes:
            return b"this is not HTTP\r\n\r\n"

        async def short(head: bytes) -> bytes:
            return b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this"

        for answer in (hang_up, nonsense):
            listener, origin = await serving(RawServer(answer))
            async with listener, client() as http:
                with pytest.raises(httpx.RemoteProtocolError):
                    await http.send(httpx.Request("GET", origin + "/"))
        listener, origin = await serving(RawServer(short, close_after=True))
        async with listener, client() as http:
            response = await http.send(httpx.Request("GET", origin + "/"), stream=True)
            with pytest.raises(httpx.RemoteProtocolError):
                # The server closes after 9 of 100 bytes: an error, never a short body taken for whole.
                async for _ in response.aiter_raw():
                    pass

    run(test)


def test_at_least_one_connection() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AiohttpTransport(0)


_TARGET_CHARACTERS = st.sampled_from(
    [*"abcXYZ019-._~!$&'()*+,;=:@/?#[]%{}|\\^`\"<> ", "%2F", "%2f", "%41", "%zz", "%", "é", "☃", "\x7f"]
)


@settings(max_examples=60, deadline=None)
@given(pieces=st.lists(_TARGET_CHARACTERS, max_size=40))
def test_any_target_goes_out_byte_for_byte(pieces: list[str]) -> None:
    """Whatever the target, aiohttp sends exactly the bytes httpx's URL holds (yarl re-quotes and
    normalises strings it parses; the transport must never let it). One exception, yarl's: an empty
    query loses its "?" (`/p?` goes out as `/p`)."""
    target = "/" + "".join(pieces).replace("#", "%23")  # a fragment never reaches a server

    async def test() -> None:
        server = RawServer(reply())
        listener, origin = await serving(server)
        async with listener, client() as http:
            raw = quote(target, safe="".join(chr(code) for code in range(0x21, 0x7F))).encode("ascii")
            url = httpx.URL(origin).copy_with(raw_path=raw)
            await http.send(httpx.Request("GET", url))
            path, _, query = url.raw_path.decode("ascii").partition("?")
            expected = f"{path}?{query}" if query else path
        request_line = server.heads[0].decode("latin-1").split("\r\n", 1)[0]
        assert request_line == f"GET {expected} HTTP/1.1"

    asyncio.run(asyncio.wait_for(test(), 20))
