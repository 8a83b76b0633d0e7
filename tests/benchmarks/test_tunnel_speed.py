"""The tunnel benchmark's pure parts: app and body, reading wrk and /proc, the nginx config, the tables."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.tunnel_speed import (
    BODY,
    LoadResult,
    PathResult,
    json_body,
    local_app,
    nginx_config,
    parse_proc_stat,
    parse_wrk,
    percentile,
    read_response,
    table,
    targets,
)
from rewrite import RewriteConfig, rewrite_response

WRK_16 = """\
Running 5s test @ http://127.0.0.1:39001/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.11ms  472.53us  11.91ms   83.26%
    Req/Sec    14.75k     2.45k   17.03k    84.00%
  Latency Distribution
     50%    0.94ms
     75%    1.09ms
     90%    1.66ms
     99%    3.20ms
  73357 requests in 5.00s, 152.16MB read
Requests/sec:  14669.08
Transfer/sec:     30.43MB
"""

WRK_ERRORS = """\
Running 10s test @ http://127.0.0.1:41045/x6qahebpg7byzgtk/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   184.75us  267.04us   1.94s    97.93%
    Req/Sec     6.10k     0.87k    9.14k    72.55%
  Latency Distribution
     50%  159.00us
     75%  187.00us
     90%  219.00us
     99%    1.20s
  30962 requests in 1.00m, 64.22MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   6071.50
Transfer/sec:     12.59MB
"""


def test_body_is_2_kb_of_json() -> None:
    """The app's body is exactly 2048 bytes of JSON records."""
    assert len(BODY) == 2048
    document = json.loads(BODY)
    assert len(document["items"]) > 10
    assert len(json_body(4096)) == 4096


def test_body_passes_the_rewriter_unchanged() -> None:
    """The tunnel's rewriter looks at the JSON body and hands back the very bytes: nothing to rewrite."""
    config = RewriteConfig(prefix="/abc", public_origin="http://gw", upstream_origin="http://127.0.0.1:3000")
    headers = [("content-type", "application/json"), ("content-length", str(len(BODY)))]
    result = rewrite_response(headers, BODY, config)
    assert not result.changed
    assert result.body is BODY


def test_too_small_a_body_is_refused() -> None:
    """A size that cannot hold the JSON skeleton is a ValueError."""
    with pytest.raises(ValueError, match="too small"):
        json_body(10)


def test_local_app_answers_with_the_body() -> None:
    """The ASGI app completes the lifespan handshake and answers a GET with its JSON body and length."""
    sent: list[dict[str, Any]] = []
    lifespan = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(lifespan)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def scenario() -> None:
        await local_app({"type": "lifespan"}, receive, send)
        await local_app({"type": "http", "method": "GET", "path": "/"}, receive, send)
        await local_app({"type": "websocket"}, receive, send)

    asyncio.run(scenario())
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
        "http.response.start",
        "http.response.body",
    ]
    assert sent[2]["status"] == 200
    assert dict(sent[2]["headers"]) == {b"content-type": b"application/json", b"content-length": b"2048"}
    assert sent[3]["body"] == BODY


def test_parse_wrk_reads_totals_and_percentiles() -> None:
    """wrk's totals, requests per second and --latency percentiles are read, in seconds."""
    result = parse_wrk(WRK_16)
    assert (result.requests, result.seconds, result.rps, result.errors) == (73357, 5.0, 14669.08, 0)
    assert (result.p50, result.p99) == pytest.approx((0.94e-3, 3.2e-3))


def test_parse_wrk_reads_units_and_errors() -> None:
    """Microseconds, seconds and minutes are converted; socket errors and non-2xx responses are errors."""
    result = parse_wrk(WRK_ERRORS)
    assert result.requests == 30962
    assert result.seconds == 60.0
    assert result.p50 == pytest.approx(159e-6)
    assert result.p99 == pytest.approx(1.2)
    assert result.errors == 12


@pytest.mark.parametrize(
    "output", ["", "unable to connect to 127.0.0.1:1 Connection refused\n", WRK_16[:300]]
)
def test_parse_wrk_refuses_other_output(output: str) -> None:
    """Output without the totals or the latency distribution is a ValueError."""
    with pytest.raises(ValueError, match="not the output of wrk"):
        parse_wrk(output)


def test_percentile_is_nearest_rank() -> None:
    """The percentile is the nearest-rank value of the sorted list, NaN when it is empty."""
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0], 0) == 1.0
    assert math.isnan(percentile([], 50))


def test_parse_proc_stat_counts_from_the_last_parenthesis() -> None:
    """A command name holding spaces and parentheses does not shift the fields: ppid, then utime + stime."""
    stat = "4242 (python (x) y) S 17 4242 4242 0 -1 4194560 1234 0 0 0 150 25 0 0 20 0 3 0 1000 1 2 3"
    assert parse_proc_stat(stat) == (17, 175)


def test_nginx_config_proxies_with_keepalive_under_its_prefix() -> None:
    """nginx runs in the foreground, one worker, HTTP/1.1 keep-alive upstream, every file in the prefix."""
    prefix = Path("/tmp/bench-prefix")
    config = nginx_config(prefix, 8081, 3000)
    for line in (
        "daemon off;",
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        "server 127.0.0.1:3000;",
        "keepalive 32;",
        "listen 127.0.0.1:8081;",
        "proxy_pass http://app;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
    ):
        assert line in config
    paths = [
        word.rstrip(";") for word in config.split() if word.startswith("/") and word != "/"
    ]  # not location /
    assert paths
    assert all(path.startswith(f"{prefix}/") for path in paths)


def _read(data: bytes) -> tuple[int, bool, bytes]:
    async def scenario() -> tuple[int, bool, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        status, close = await read_response(reader)
        return status, close, await reader.read()

    return asyncio.run(scenario())


def test_read_response_with_content_length_stops_at_the_body() -> None:
    """A Content-Length body is read exactly, leaving the next response on the connection."""
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert _read(response + b"HTTP/1.1 204") == (200, False, b"HTTP/1.1 204")


def test_read_response_with_chunks_and_trailers() -> None:
    """A chunked body, chunk extensions and trailers included, is read to its end."""
    response = (
        b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\nrest"
    )
    assert _read(response) == (502, True, b"rest")


def test_read_response_without_length_reads_to_the_end() -> None:
    """A body with neither length nor chunks ends with the connection, which is then closed."""
    assert _read(b"HTTP/1.0 200 OK\r\n\r\nall of it") == (200, True, b"")


def test_read_response_refuses_a_truncated_body() -> None:
    """A connection that ends inside the body raises IncompleteReadError."""
    with pytest.raises(asyncio.IncompleteReadError):
        _read(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort")


def _load(rps: float, p50_ms: float, errors: int = 0) -> LoadResult:
    return LoadResult(int(rps * 5), 5.0, rps, p50_ms / 1000, p50_ms * 3 / 1000, errors)


def _paths(tunnel_rps: float = 900.0, tunnel_p50_ms: float = 1.5) -> list[PathResult]:
    return [
        PathResult("direct", "client → app", (_load(12000, 0.2),), (_load(5000, 0.15), _load(5000, 0.12))),
        PathResult("nginx", "client → nginx", (_load(7000, 0.3), _load(8000, 0.3)), (_load(3000, 0.25),)),
        PathResult(
            "tunnel up",
            "client → tunnel → app",
            (_load(tunnel_rps, 2.0),),
            (_load(600, tunnel_p50_ms, errors=2),),
            proxy_cpu=(0.0021, 0.0019),
            app_cpu=(0.0001,),
        ),
    ]


def test_table_shows_the_best_round_and_every_round() -> None:
    """The table keeps the best req/s, the lowest median and CPU; the notes list each round and the errors."""
    text = table(_paths())
    assert "| direct | client → app | 12,000 | 0.12 | 0.36 |  |  |" in text
    assert "| nginx | client → nginx | 8,000 | 0.25 | 0.75 |  |  |" in text
    assert "| tunnel up | client → tunnel → app | 900 | 1.50 | 4.50 | 1900 | 100 |" in text
    assert "- nginx, each round: req/s 7,000, 8,000; p50 ms 0.25" in text
    assert "proxy CPU µs/req 2100, 1900" in text
    assert "- tunnel up: **2 failed requests**" in text


def test_table_names_the_reason_for_a_skipped_path() -> None:
    """A skipped path gets a row saying so and a note with the reason."""
    paths = [*_paths()[::2], PathResult("nginx", "client → nginx", skipped="nginx is not installed")]
    text = table(paths)
    assert "| nginx | client → nginx | skipped |  |  |  |  |" in text
    assert "- nginx: skipped, nginx is not installed" in text


def test_targets_met() -> None:
    """0.1125 of nginx's req/s and 1.38 ms added to the median meet both targets."""
    text = targets(_paths())
    assert "≥ 0.10 | 0.113 | yes |" in text
    assert "≤ 2 ms | 1.38 ms | yes |" in text


def test_targets_missed() -> None:
    """400 req/s against 8000 and 2.5 ms added to the median miss both targets."""
    text = targets(_paths(tunnel_rps=400, tunnel_p50_ms=2.62))
    assert "| 0.050 | **no** |" in text
    assert "| 2.50 ms | **no** |" in text


def test_targets_without_nginx_or_tunnel() -> None:
    """Without nginx the throughput target is n/a with the reason; without the tunnel both are."""
    direct, nginx, tunnel = _paths()
    skipped_nginx = PathResult(nginx.name, nginx.route, skipped="nginx is not installed")
    assert "| n/a: nginx skipped |" in targets([direct, skipped_nginx, tunnel])
    skipped_tunnel = PathResult(tunnel.name, tunnel.route, skipped="it did not start")
    text = targets([direct, nginx, skipped_tunnel])
    assert text.count("n/a: tunnel up skipped") == 2
