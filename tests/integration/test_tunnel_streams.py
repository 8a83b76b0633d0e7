"""Streamed bodies through `tunnel up` (the real CLI, in a subprocess) in front of a real local app: big
downloads and uploads in bounded memory, flow control back to the local app, a stream passed on as it is
produced, and a stream that breaks off seen as broken, never as a shorter body.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.cli import RunningTunnel, start_tunnel
from tests.support.echo_app import create_echo_app, pattern_bytes
from tests.support.servers import RunningServer, serve_in_thread

pytestmark = pytest.mark.integration

MB = 1024 * 1024
GATE = threading.Event()


@pytest.fixture(scope="module")
def local_app() -> Iterator[RunningServer]:
    """The app the developer exposes, with its `/events` gate."""
    with serve_in_thread(create_echo_app(GATE)) as server:
        yield server


@pytest.fixture(scope="module")
def tunnel(local_app: RunningServer) -> Iterator[RunningTunnel]:
    """`tunnel up` in front of the local app, allowing 200 MB uploads."""
    args = ["up", str(local_app.port), "--gateway-port", "0", "--body-limit", str(200 * MB)]
    running = start_tunnel(args)
    try:
        yield running
    finally:
        assert running.stop() == 0


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Sample a process's resident memory while the block runs; yields [baseline, peak]."""
    found = [_rss(pid), 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            found[1] = max(found[1], _rss(pid))
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()


def _warm_up(tunnel: RunningTunnel) -> None:
    """One streamed exchange each way first, so that first-use allocations do not count as growth."""
    with httpx.Client(timeout=60) as http:
        assert http.get(f"{tunnel.url}/stream/{4 * MB}").status_code == 200
        assert http.post(f"{tunnel.url}/upload", content=iter([b"x" * MB] * 4)).status_code == 200


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory use from /proc")
def test_120_mb_download_streams_in_bounded_memory(tunnel: RunningTunnel) -> None:
    """A 120 MB body of unannounced length arrives byte-exact while the tunnel's memory grows by far less
    than the body (it is passed on piece by piece, never held)."""
    _warm_up(tunnel)
    size = 120 * MB
    expected = hashlib.sha256()
    for piece in _chunks(size):
        expected.update(piece)
    digest = hashlib.sha256()
    received = 0
    with (
        peak_rss(tunnel.process.pid) as rss,
        httpx.Client(timeout=60) as http,
        http.stream("GET", f"{tunnel.url}/stream/{size}") as response,
    ):
        assert response.status_code == 200
        assert "content-length" not in response.headers
        for piece in response.iter_raw():
            digest.update(piece)
            received += len(piece)
    assert received == size
    assert digest.hexdigest() == expected.hexdigest()
    baseline, peak = rss
    assert peak - baseline < 32 * MB, f"the tunnel grew by {(peak - baseline) / MB:.0f} MB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory use from /proc")
def test_80_mb_upload_streams_in_bounded_memory(tunnel: RunningTunnel) -> None:
    """An 80 MB upload of unannounced length (chunked) reaches the app whole while the tunnel's memory
    grows by far less than the body."""
    _warm_up(tunnel)
    size = 80 * MB
    expected = hashlib.sha256()
    for piece in _chunks(size):
        expected.update(piece)
    with peak_rss(tunnel.process.pid) as rss, httpx.Client(timeout=60) as http:
        response = http.post(f"{tunnel.url}/upload", content=_chunks(size))
    assert response.status_code == 200
    assert response.json() == {"length": size, "sha256": expected.hexdigest()}
    baseline, peak = rss
    assert peak - baseline < 32 * MB, f"the tunnel grew by {(peak - baseline) / MB:.0f} MB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory use from /proc")
def test_a_client_that_stops_reading_holds_the_local_app_back(tunnel: RunningTunnel) -> None:
    """While the client reads nothing, the tunnel buffers no more than its flow-control window and socket
    buffers: the pause reaches the agent, which stops reading the local app."""
    _warm_up(tunnel)
    with httpx.Client(timeout=60) as http, http.stream("GET", f"{tunnel.url}/stream/{300 * MB}") as response:
        pieces = response.iter_raw()
        next(pieces)
        time.sleep(0.5)  # let whatever is in flight settle
        before = _rss(tunnel.process.pid)
        with peak_rss(tunnel.process.pid) as rss:
            time.sleep(2.0)  # without flow control, the tunnel would take in ~60 MB by now
        assert rss[1] - before < 16 * MB, f"the tunnel grew by {(rss[1] - before) / MB:.0f} MB"
        received = 0
        for piece in pieces:  # and the transfer goes on once the client reads again
            received += len(piece)
            if received > 20 * MB:
                break
    assert received > 20 * MB


def test_event_stream_is_passed_on_as_it_is_produced(tunnel: RunningTunnel) -> None:
    """The first server-sent event reaches the client while the app still holds back the second."""
    GATE.clear()
    with httpx.Client(timeout=30) as http, http.stream("GET", f"{tunnel.url}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "data: first"
        GATE.set()  # only now may the app send the second event
        rest = [line for line in lines if line]
    assert rest == ["data: second"]


def test_a_body_that_breaks_off_is_not_passed_off_as_complete(tunnel: RunningTunnel) -> None:
    """When the local app breaks off a streamed body, the client's response breaks off too."""
    with httpx.Client(timeout=30) as http, http.stream("GET", f"{tunnel.url}/broken/{3 * MB}") as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_a_streamed_html_page_is_gathered_and_rewritten(tunnel: RunningTunnel) -> None:
    """An HTML page of unannounced length is read whole, rewritten (links keep the prefix), and sent
    with its length."""
    prefix = "/" + str(tunnel.ready["tunnel_id"])
    response = httpx.get(f"{tunnel.url}/page/{300 * 1024}", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(response.content))
    assert response.text.count(f'href="{prefix}/echo"') > 1000
    assert 'href="/echo"' not in response.text


def test_a_client_that_leaves_stops_the_local_transfer(tunnel: RunningTunnel) -> None:
    """A client that goes away mid-download makes the agent abandon the request, not read it to the end."""
    with httpx.Client(timeout=30) as http, http.stream("GET", f"{tunnel.url}/stream/{500 * MB}") as response:
        next(response.iter_raw())
    event = tunnel.wait_for(
        lambda e: e.get("event") == "request" and e.get("path") == f"/stream/{500 * MB}", timeout=30
    )
    assert event["error"] == "abandoned"


def _chunks(size: int) -> Iterator[bytes]:
    block = pattern_bytes(MB)
    for start in range(0, size, MB):
        yield block[: min(MB, size - start)]
