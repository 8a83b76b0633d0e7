"""Requests per second and latency of a 2 KB GET through `tunnel up`, next to the same local app reached
directly, through nginx `proxy_pass`, and through `tunnel serve` with a `tunnel agent` over a loopback
WebSocket, measured side by side in one run. Does I/O: starts a uvicorn app, nginx and the tunnels as
subprocesses on loopback, drives them with wrk (or, without wrk, a Python load generator) and reads their
CPU time from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "BODY",
    "LoadResult",
    "LoadTool",
    "PathResult",
    "json_body",
    "local_app",
    "nginx_config",
    "parse_proc_stat",
    "parse_wrk",
    "percentile",
    "python_load",
    "read_response",
    "run",
    "table",
    "targets",
]

LoadTool = Literal["auto", "wrk", "python"]

CONNECTIONS: Final = 16
MIN_RATIO_TO_NGINX: Final = 0.10  # tunnel rps ÷ nginx rps at 16 connections, at least
MAX_ADDED_MEDIAN: Final = 0.002  # seconds added to the direct median at 1 connection, at most
_HOST: Final = "127.0.0.1"
_REPO: Final = Path(__file__).resolve().parent.parent
_SBIN: Final = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # nginx lives here, often off a user's PATH
_STARTUP_TIMEOUT: Final = 20.0
_NGINX_KEEPALIVE: Final = 32


def json_body(size: int = 2048) -> bytes:
    """A compact JSON document of exactly `size` bytes: a list of small records, as an API would answer.

    It is neither OpenAPI nor a web app manifest, so the tunnel's JSON rewriter looks at it and passes it
    through unchanged (the normal path for an API response).
    """

    def dump(items: list[dict[str, object]], note: str) -> bytes:
        return json.dumps({"items": items, "note": note}, separators=(",", ":")).encode()

    items: list[dict[str, object]] = []
    while True:
        i = len(items)
        record: dict[str, object] = {"id": i, "name": f"item {i}", "price": i * 1.25, "in_stock": i % 3 > 0}
        if len(dump([*items, record], "")) > size:
            break
        items.append(record)
    padding = size - len(dump(items, ""))
    if padding < 0:
        raise ValueError(f"size {size} is too small for a JSON body")
    return dump(items, "x" * padding)


BODY: Final = json_body()
_HEADERS: Final = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def local_app(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
    """The local app of the benchmark: a bare ASGI app that answers every request with `BODY`.

    It is what a developer exposes (`uvicorn app:app`), minus any framework: the proxies are measured, not
    the app. Lifespan events are acknowledged so uvicorn starts without a warning.
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one load run measured."""

    requests: int  # completed responses
    seconds: float  # how long the run took
    rps: float  # requests per second
    p50: float  # median latency, seconds
    p99: float  # 99th percentile latency, seconds
    errors: int = 0  # non-2xx/3xx responses, socket errors and timeouts


@dataclass(frozen=True, slots=True)
class PathResult:
    """One path from client to app, measured in every round, or why it was not measured.

    Each round holds one run at 16 connections (throughput, and the CPU time the processes spent on it)
    and one at 1 connection (latency). The best round counts, as in `rewrite_speed`: whatever else runs on
    the machine only ever makes a round worse.
    """

    name: str
    route: str
    throughput: tuple[LoadResult, ...] = ()
    latency: tuple[LoadResult, ...] = ()
    proxy_cpu: tuple[float, ...] = ()  # CPU seconds per request of the proxy's processes, 16 connections
    app_cpu: tuple[float, ...] = ()  # CPU seconds per request of the local app, 16 connections
    skipped: str | None = None

    @property
    def rps(self) -> float | None:
        """The best requests per second at 16 connections."""
        return max((run.rps for run in self.throughput), default=None)

    @property
    def best_latency(self) -> LoadResult | None:
        """The 1-connection run with the lowest median."""
        return min(self.latency, key=lambda run: run.p50, default=None)

    @property
    def errors(self) -> int:
        """Failed requests over all runs."""
        return sum(run.errors for run in (*self.throughput, *self.latency))


# -- pure parts ---------------------------------------------------------------------------------------------


_UNITS: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_WRK_TOTAL: Final = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_WRK_RPS: Final = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_WRK_PERCENTILE: Final = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_WRK_SOCKET_ERRORS: Final = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_WRK_NON_2XX: Final = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.MULTILINE)


def parse_wrk(output: str) -> LoadResult:
    """Read a wrk run's totals and its `--latency` distribution.

    Args:
        output: What `wrk --latency` printed.

    Returns:
        Requests, duration, requests per second, median and 99th percentile, errors.

    Raises:
        ValueError: The output lacks the totals or the latency distribution.
    """
    total = _WRK_TOTAL.search(output)
    rps = _WRK_RPS.search(output)
    percentiles = {match[1]: float(match[2]) * _UNITS[match[3]] for match in _WRK_PERCENTILE.finditer(output)}
    if total is None or rps is None or set(percentiles) != {"50", "99"}:
        raise ValueError(f"not the output of wrk --latency: {output[-300:]!r}")
    socket_errors = _WRK_SOCKET_ERRORS.search(output)
    non_2xx = _WRK_NON_2XX.search(output)
    errors = sum(int(count) for count in socket_errors.groups()) if socket_errors else 0
    errors += int(non_2xx[1]) if non_2xx else 0
    return LoadResult(
        requests=int(total[1]),
        seconds=float(total[2]) * _UNITS[total[3]],
        rps=float(rps[1]),
        p50=percentiles["50"],
        p99=percentiles["99"],
        errors=errors,
    )


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of values sorted in ascending order (NaN when there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def parse_proc_stat(stat: str) -> tuple[int, int]:
    """The parent pid and the CPU clock ticks (user + system) in the text of `/proc/<pid>/stat`.

    The command name, field 2, is in parentheses and may itself hold spaces and parentheses, so fields are
    counted from the last `)` (proc(5): ppid is field 4, utime 14, stime 15).
    """
    fields = stat[stat.rindex(")") + 1 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def nginx_config(prefix: Path, port: int, upstream_port: int) -> str:
    """An nginx configuration that proxies 127.0.0.1:`port` to the app, keeping every file under `prefix`.

    One worker process (the machine also runs the app and the load generator), HTTP/1.1 with a pool of
    idle keep-alive connections to the app, and the default access log (the tunnel logs every request too).
    """
    return f"""\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    upstream app {{
        server {_HOST}:{upstream_port};
        keepalive {_NGINX_KEEPALIVE};
    }}

    server {{
        listen {_HOST}:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _us(values: tuple[float, ...]) -> str:
    return f"{min(values) * 1e6:.0f}" if values else ""


def table(paths: Sequence[PathResult]) -> str:
    """The paths as a Markdown table (best round of each), then each round's numbers and any skips."""
    lines = [
        "| path | route | req/s, 16 conn. | p50 ms, 1 conn. | p99 ms, 1 conn. "
        "| proxy CPU µs/req | app CPU µs/req |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    notes: list[str] = []
    for path in paths:
        if path.skipped is not None:
            lines.append(f"| {path.name} | {path.route} | skipped |  |  |  |  |")
            notes.append(f"- {path.name}: skipped, {path.skipped}")
            continue
        latency = path.best_latency
        cells = [path.name, path.route, "" if path.rps is None else f"{path.rps:,.0f}"]
        cells += ["", ""] if latency is None else [_ms(latency.p50), _ms(latency.p99)]
        cells += [_us(path.proxy_cpu), _us(path.app_cpu)]
        lines.append("| " + " | ".join(cells) + " |")
        rounds = [
            f"req/s {', '.join(f'{run.rps:,.0f}' for run in path.throughput)}",
            f"p50 ms {', '.join(_ms(run.p50) for run in path.latency)}",
        ]
        if path.proxy_cpu:
            rounds.append(f"proxy CPU µs/req {', '.join(f'{cpu * 1e6:.0f}' for cpu in path.proxy_cpu)}")
        notes.append(f"- {path.name}, each round: {'; '.join(rounds)}")
        if path.errors:
            notes.append(f"- {path.name}: **{path.errors} failed requests** (non-2xx/3xx or socket errors)")
    return "\n".join([*lines, "", *notes])


def targets(paths: Sequence[PathResult]) -> str:
    """The issue's two targets as a Markdown table: measured, target and whether it was met."""
    by_name = {path.name: path for path in paths}
    direct, nginx, tunnel = (by_name.get(name) for name in ("direct", "nginx", "tunnel up"))
    lines = ["| target | measured | met? |", "|---|--:|:-:|"]
    ratio_target = f"`tunnel up` req/s ÷ nginx req/s at {CONNECTIONS} connections ≥ {MIN_RATIO_TO_NGINX:.2f}"
    tunnel_rps = tunnel.rps if tunnel is not None else None
    nginx_rps = nginx.rps if nginx is not None else None
    if tunnel_rps is not None and nginx_rps:
        ratio = tunnel_rps / nginx_rps
        lines.append(f"| {ratio_target} | {ratio:.3f} | {_met(ratio >= MIN_RATIO_TO_NGINX)} |")
    else:
        lines.append(f"| {ratio_target} |  | n/a: {_why_missing(nginx, tunnel)} |")
    latency_target = f"`tunnel up` p50 minus direct p50 at 1 connection ≤ {MAX_ADDED_MEDIAN * 1000:.0f} ms"
    tunnel_latency = tunnel.best_latency if tunnel is not None else None
    direct_latency = direct.best_latency if direct is not None else None
    if tunnel_latency is not None and direct_latency is not None:
        added = tunnel_latency.p50 - direct_latency.p50
        lines.append(f"| {latency_target} | {_ms(added)} ms | {_met(added <= MAX_ADDED_MEDIAN)} |")
    else:
        lines.append(f"| {latency_target} |  | n/a: {_why_missing(direct, tunnel)} |")
    return "\n".join(lines)


def _met(met: bool) -> str:
    return "yes" if met else "**no**"


def _why_missing(*paths: PathResult | None) -> str:
    reasons = [f"{path.name} skipped" for path in paths if path is not None and path.skipped is not None]
    return "; ".join(reasons) or "not measured"


# -- the Python load generator ------------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response off `reader`: its status, and whether the server will close the connection.

    Handles `Content-Length`, `Transfer-Encoding: chunked` and bodies that end with the connection.

    Raises:
        asyncio.IncompleteReadError: The connection ended inside the response.
        ValueError: The response head is malformed.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length: int | None = None
    chunked = close = False
    for line in header_lines:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection":
            close = b"close" in value
    if chunked:
        while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
            await reader.readexactly(size + 2)  # the chunk and its CRLF
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the empty line
            pass
    elif length is not None:
        await reader.readexactly(length)
    elif status >= 200 and status not in (204, 304):
        await reader.read()
        close = True
    return status, close


async def _python_load_async(
    host: str, port: int, path: str, connections: int, duration: float
) -> LoadResult:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: tunnel-bench\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + duration

    async def client() -> None:
        nonlocal errors
        writer: asyncio.StreamWriter | None = None
        while time.perf_counter() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                sent = time.perf_counter()
                writer.write(request)
                status, close = await asyncio.wait_for(read_response(reader), timeout=5.0)
                latencies.append(time.perf_counter() - sent)
                errors += not 200 <= status < 400
            except (
                OSError,
                ValueError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ):  # OSError: timeouts too
                errors += 1
                close = True
                await asyncio.sleep(0.01)  # a refused connection should not spin the loop
            if close and writer is not None:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    seconds = time.perf_counter() - started
    latencies.sort()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return LoadResult(len(latencies), seconds, len(latencies) / seconds, p50, p99, errors)


def python_load(url: str, connections: int, duration: float) -> LoadResult:
    """Keep `connections` keep-alive connections busy with GETs of `url` for `duration` seconds.

    The fallback when wrk is missing: raw asyncio streams in this process, one request in flight per
    connection, as wrk does. It is far slower than wrk, so at 16 connections it may measure itself.
    """
    host, port, path = _split_url(url)
    return asyncio.run(_python_load_async(host, port, path, connections, duration))


def _split_url(url: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"http://([^/:]+):(\d+)(/.*)", url)
    if match is None:
        raise ValueError(f"not an http://host:port/path URL: {url}")
    return match[1], int(match[2]), match[3]


# -- processes ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, limit: int = 400) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-limit:].strip()
    return ""


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((_HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"not listening on port {port} after {_STARTUP_TIMEOUT:.0f} s")


@contextlib.contextmanager
def _started(argv: list[str], log: Path, output: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` in a session of its own, stderr to `log`, stdout to `output` or nowhere.

    On exit it is stopped: SIGTERM, then SIGKILL to its process group if it has not gone within 5 s.
    """
    with log.open("wb") as stderr, (output or Path(os.devnull)).open("wb") as stdout:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=_REPO, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group this process leads: it and its children
                process.wait()


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) spent so far by process `pid` and its live children; None without /proc."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return None
    for name in entries:
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as stat:
                parents[int(name)], ticks[int(name)] = parse_proc_stat(stat.read())
        except (OSError, ValueError, IndexError):
            continue  # gone, or not ours to read
    if pid not in ticks:
        return None
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += ticks.get(current, 0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total / os.sysconf("SC_CLK_TCK")


def _check(url: str) -> None:
    """One GET: the answer must be 200 with the app's very bytes (the JSON passes the tunnel unchanged)."""
    host, port, path = _split_url(url)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200 or body != BODY:
        raise RuntimeError(f"GET {url} answered {response.status} with {len(body)} bytes, not the app's body")


def _wrk_load(wrk: str) -> Callable[[str, int, float], LoadResult]:
    def load(url: str, connections: int, duration: float) -> LoadResult:
        argv = [wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "5s", url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"wrk exited with status {done.returncode}: {done.stderr.strip()[-300:]}")
        return parse_wrk(done.stdout)

    return load


def _version(argv: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(pattern, done.stdout + done.stderr)
    return match[1] if match else "?"


def _package(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"no {name}"


def _tunnel_argv(*arguments: str) -> list[str]:
    script = Path(sys.executable).with_name("tunnel")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli"]
    return [*command, *arguments]


def _ready_event(process: subprocess.Popen[bytes], log: Path, output: Path) -> dict[str, Any]:
    """The first JSON line a `tunnel` command printed (its ready event), once it has."""
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while b"\n" not in (text := output.read_bytes()):
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode}: {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no ready event after {_STARTUP_TIMEOUT:.0f} s: {_tail(log)}")
        time.sleep(0.05)
    line = text.split(b"\n", 1)[0]
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict) or "path_url" not in event:
        raise RuntimeError(f"no ready event, got {line[:200]!r}: {_tail(log)}")
    return event


@contextlib.contextmanager
def _tunnel(app_port: int, log: Path, output: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`tunnel up` in front of the app: yields its process and the path-mode URL of its ready event.

    Its stdout (the ready event, then one JSON line per request) goes to the file `output`, as a log would.
    """
    argv = _tunnel_argv("up", str(app_port), "--gateway-port", "0", "--json")
    with _started(argv, log, output) as process:
        event = _ready_event(process, log, output)
        yield process, str(event["path_url"]).rstrip("/") + "/"


@contextlib.contextmanager
def _served_tunnel(
    app_port: int, directory: Path
) -> Iterator[tuple[tuple[subprocess.Popen[bytes], ...], str, tuple[Path, ...]]]:
    """`tunnel serve` and a `tunnel agent` connected to it over a loopback WebSocket, in front of the app:
    yields both processes, the tunnel's path-mode URL and their logs."""
    logs = tuple(
        directory / name for name in ("serve.stderr", "serve.stdout", "agent.stderr", "agent.stdout")
    )
    serve_argv = _tunnel_argv("serve", "--port", "0", "--json", "--auth", "none")
    with _started(serve_argv, logs[0], logs[1]) as serve:
        endpoint = str(_ready_event(serve, logs[0], logs[1])["agent_endpoint"])
        agent_argv = _tunnel_argv("agent", str(app_port), "--endpoint", endpoint, "--json")
        with _started(agent_argv, logs[2], logs[3]) as agent:
            url = str(_ready_event(agent, logs[2], logs[3])["path_url"])
            yield (serve, agent), url.rstrip("/") + "/", logs


@contextlib.contextmanager
def _nginx(nginx: str, app_port: int, directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """nginx from a generated configuration in `directory`: yields its master process and its URL."""
    prefix = directory / "nginx"
    prefix.mkdir()
    port = _free_port()
    config = prefix / "nginx.conf"
    config.write_text(nginx_config(prefix, port, app_port), encoding="utf-8")
    # -e: the error log before the configuration is read, which is otherwise /var/log/nginx (not writable).
    argv = [nginx, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    with _started(argv, prefix / "stderr.log") as process:
        _wait_listening(port, process, prefix / "error.log")
        yield process, f"http://{_HOST}:{port}/"


# -- the run ------------------------------------------------------------------------------------------------


@dataclass
class _Target:
    """A path being measured: its results so far, its URL, and the proxy's process and log, if any."""

    result: PathResult
    url: str = ""
    proxies: tuple[subprocess.Popen[bytes], ...] = ()
    logs: tuple[Path, ...] = ()

    def cpu_seconds(self) -> float | None:
        """CPU time of all the proxy's processes, or None without any."""
        times = [_cpu_seconds(process.pid) for process in self.proxies]
        return None if not times or None in times else sum(time for time in times if time is not None)

    def failure(self, exc: Exception) -> str:
        """Why a load run failed, with the proxy's last words if it has died."""
        reason = f"the load run failed: {exc}"
        for process in self.proxies:
            if process.poll() is not None:
                reason += f"; a proxy process exited with status {process.returncode}"
                reason += "".join(f"; {log.name}: {_tail(log)}" for log in self.logs)
        return reason


def _measure_round(
    targets_: list[_Target], app_pid: int, load: Callable[[str, int, float], LoadResult], duration: float
) -> None:
    for target in targets_:
        path = target.result
        if path.skipped is not None:
            continue
        print(f"  tunnel speed: {path.name} ...", file=sys.stderr, flush=True)
        try:
            proxy_before = target.cpu_seconds()
            app_before = _cpu_seconds(app_pid)
            throughput = load(target.url, CONNECTIONS, duration)
            proxy_after = target.cpu_seconds()
            app_after = _cpu_seconds(app_pid)
            latency = load(target.url, 1, duration)
        except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            target.result = _skip(path, target.failure(exc))
            continue
        proxy_cpu = path.proxy_cpu
        if proxy_before is not None and proxy_after is not None and throughput.requests:
            proxy_cpu = (*proxy_cpu, (proxy_after - proxy_before) / throughput.requests)
        app_cpu = path.app_cpu
        if app_before is not None and app_after is not None and throughput.requests:
            app_cpu = (*app_cpu, (app_after - app_before) / throughput.requests)
        target.result = PathResult(
            path.name,
            path.route,
            (*path.throughput, throughput),
            (*path.latency, latency),
            proxy_cpu,
            app_cpu,
        )


def _skip(path: PathResult, reason: str) -> PathResult:
    return PathResult(path.name, path.route, skipped=reason)


def run(duration: float = 4.0, rounds: int = 2, load_tool: LoadTool = "auto") -> str:
    """Start the app, nginx and the tunnels, measure every path in turn each round, and report.

    Args:
        duration: Seconds of each load run (one at 16 connections, one at 1, per path and round).
        rounds: How many times each path is measured; paths take turns, so they see the same machine.
        load_tool: "wrk", "python" (the asyncio load generator), or "auto": wrk when it is installed.

    Returns:
        A Markdown section: the setup, the table, and the targets.
    """
    wrk = shutil.which("wrk")
    if load_tool == "wrk" and wrk is None:
        raise RuntimeError("wrk is not installed")
    use_wrk = wrk is not None and load_tool != "python"
    load = _wrk_load(wrk) if wrk is not None and use_wrk else python_load
    nginx = shutil.which("nginx") or shutil.which("nginx", path=os.pathsep.join(_SBIN))
    load_average = _load_average()
    started = time.perf_counter()
    paths = [
        _Target(PathResult("direct", "client → app")),
        _Target(PathResult("nginx", "client → nginx `proxy_pass` → app")),
        _Target(PathResult("tunnel up", "client → `tunnel up` (gateway and agent in one process) → app")),
        _Target(
            PathResult("serve + agent", "client → `tunnel serve` ⇄ loopback WebSocket ⇄ `tunnel agent` → app")
        ),
    ]
    direct, via_nginx, via_tunnel, via_served = paths
    with tempfile.TemporaryDirectory(prefix="tunnel-bench-") as temp, contextlib.ExitStack() as stack:
        directory = Path(temp)
        app_port = _free_port()
        app_argv = [sys.executable, "-m", "uvicorn", f"{__name__}:local_app", "--host", _HOST]
        app_argv += ["--port", str(app_port)]
        app = stack.enter_context(_started(app_argv, directory / "app.log"))
        _wait_listening(app_port, app, directory / "app.log")
        direct.url = f"http://{_HOST}:{app_port}/"
        if nginx is None:
            via_nginx.result = _skip(via_nginx.result, "nginx is not installed")
        else:
            try:
                nginx_process, via_nginx.url = stack.enter_context(_nginx(nginx, app_port, directory))
                via_nginx.proxies = (nginx_process,)
                via_nginx.logs = (directory / "nginx" / "error.log",)
            except (OSError, RuntimeError) as exc:
                via_nginx.result = _skip(via_nginx.result, f"nginx did not start: {exc}")
        try:
            via_tunnel.logs = (directory / "tunnel.stderr", directory / "tunnel.stdout")
            tunnel = _tunnel(app_port, *via_tunnel.logs)
            tunnel_process, via_tunnel.url = stack.enter_context(tunnel)
            via_tunnel.proxies = (tunnel_process,)
        except (OSError, RuntimeError) as exc:
            via_tunnel.result = _skip(via_tunnel.result, f"`tunnel up` did not start: {exc}")
        try:
            via_served.proxies, via_served.url, via_served.logs = stack.enter_context(
                _served_tunnel(app_port, directory)
            )
        except (OSError, RuntimeError) as exc:
            via_served.result = _skip(
                via_served.result, f"`tunnel serve` and `tunnel agent` did not start: {exc}"
            )
        for target in paths:
            if target.result.skipped is None:
                try:
                    _check(target.url)
                    load(target.url, CONNECTIONS, 1.0)  # warm-up: connections, pools, caches
                except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                    target.result = _skip(target.result, target.failure(exc).replace("load run", "warm-up"))
        for _ in range(rounds):
            _measure_round(paths, app.pid, load, duration)
    results = [target.result for target in paths]
    if use_wrk:
        version = _version([str(wrk), "--version"], r"^wrk (?:debian/)?(\S+)")
        tool = f"wrk {version} (`wrk -t1 -c{CONNECTIONS}`, and `-c1 --latency` for latency)"
    else:
        why = "wrk is not installed" if wrk is None else "asked for"
        tool = f"**the Python load generator** ({why}: asyncio in the benchmark's process, slower than wrk)"
    nginx_text = "no nginx"
    if nginx is not None:
        version = _version([nginx, "-v"], r"nginx/(\S+)")
        nginx_text = f"nginx {version} (1 worker process, upstream keepalive {_NGINX_KEEPALIVE})"
    setup = (
        f"{platform.platform()}; {_cpu_model()}; {os.cpu_count()} CPUs; "
        f"{platform.python_implementation()} {platform.python_version()}; "
        f"{_package('uvicorn')} with its defaults ({_package('uvloop')}, {_package('httptools')}); "
        f"{nginx_text}; load: {tool}; "
        f"load average (1, 5, 15 min) {load_average} before the run and {_load_average()} after; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    rounds_text = "1 round" if rounds == 1 else f"{rounds} rounds"
    return (
        "# Tunnel throughput and latency\n\n"
        f"{setup}\n\n"
        f"A GET answered with {len(BODY)} bytes of `application/json` by a bare ASGI app under uvicorn, the "
        f"same app for every path. Each path is checked (200, the app's very bytes) and warmed up for "
        f"1 s, then the paths take turns, {rounds_text} of {duration:g} s at {CONNECTIONS} connections "
        f"(req/s, and the CPU time the proxy's and the app's processes spent, from /proc, ÷ requests) and "
        f"{duration:g} s at 1 connection (latency). The best round counts. The load generator shares the "
        f"machine's CPUs with the app and the proxy. Took {time.perf_counter() - started:.0f} s.\n\n"
        f"{table(results)}\n\n{targets(results)}\n"
    )


def _load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
