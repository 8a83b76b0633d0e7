"""The `tunnel` command line: parses arguments and starts the piece a subcommand names. Does I/O.

`tunnel up` and `tunnel serve` (agent/serve_cli.py) run the self-hosted gateway, with or without an agent
beside it; `tunnel agent` (agent/agent_cli.py) is the forwarder; `tunnel emulate` runs the Lambda gateway
as AWS would; `tunnel demo` runs the rewriting core's demo proxy in front of a local app, starting the
sample pet store itself when nothing listens on the local port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn

from agent.agent_cli import add_agent_arguments, agent_command, port_or_zero
from agent.demo import DemoProxy
from agent.package import add_package_arguments, package_command
from agent.serve_cli import (
    add_serve_arguments,
    add_up_arguments,
    is_listening,
    serve_command,
    up_command,
)
from lambda_app.emulate_cli import add_emulate_arguments, emulate_command
from rewrite import RewriteConfig

__all__ = ["DemoSettings", "build_parser", "main", "run_demo"]

_LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What `tunnel demo` was asked to do."""

    upstream_port: int
    port: int
    prefix: str
    json: bool


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "upstream_port",
        metavar="PORT",
        nargs="?",
        type=port_or_zero,
        default=3000,
        help="local port of the app to expose (default 3000); the sample app is started there if it is free",
    )
    parser.add_argument(
        "--port",
        type=port_or_zero,
        default=8080,
        help="port the proxy listens on, 0 for any free one (default 8080)",
    )
    parser.add_argument(
        "--prefix", default="/demo", help="path prefix the app is served under (default /demo)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line per event instead of prose")


def _demo_command(args: argparse.Namespace) -> int:
    settings = DemoSettings(
        upstream_port=args.upstream_port, port=args.port, prefix=args.prefix, json=args.json
    )
    return run_demo(settings)


# name -> (help, add arguments, run).
_SUBCOMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "up": (
        "expose a local port: a self-hosted gateway and an agent in one process",
        add_up_arguments,
        up_command,
    ),
    "serve": (
        "run the self-hosted gateway: public HTTP and agent WebSockets on one port",
        add_serve_arguments,
        serve_command,
    ),
    "demo": (
        "serve a local app under a path prefix through the rewriting proxy",
        _add_demo_arguments,
        _demo_command,
    ),
    "agent": (
        "forward a public tunnel to a local port: connect to a gateway and replay its requests",
        add_agent_arguments,
        agent_command,
    ),
    "emulate": (
        "run the Lambda handler as AWS would: API Gateway WebSocket and HTTP APIs, @connections, DynamoDB",
        add_emulate_arguments,
        emulate_command,
    ),
    "package": (
        "build the AWS Lambda deployment zip of the gateway (deploy/template.yaml deploys it)",
        add_package_arguments,
        package_command,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `tunnel`, one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="tunnel", description="Expose a local web app through a tunnel.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, run) in _SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(subparser)
        subparser.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `tunnel`.

    Args:
        argv: The arguments after the program name; `sys.argv[1:]` when None.

    Returns:
        The process exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


def run_demo(settings: DemoSettings) -> int:
    """Serve the demo proxy until Ctrl-C or SIGTERM.

    Args:
        settings: Ports, prefix and output format.

    Returns:
        0 after a clean stop, 1 when a port could not be bound or the prefix is invalid.
    """
    # A bare prefix ("demo", "/demo/") is accepted in the form people type it.
    prefix = "/" + settings.prefix.strip("/") if settings.prefix.strip("/") else ""
    sample_app: Any = None
    if settings.upstream_port == 0 or not is_listening(_LOOPBACK, settings.upstream_port):
        try:
            # FastAPI and Swagger UI's assets are dev dependencies, needed only when the sample app runs.
            from agent.sample_app import create_app
        except ImportError as exc:
            print(
                f"tunnel demo: nothing listens on port {settings.upstream_port}, and the sample app needs "
                f"{exc.name or 'FastAPI'}: pip install 'http-tunnel-py[dev]'",
                file=sys.stderr,
            )
            return 1
        sample_app = create_app()
    sample_socket: socket.socket | None = None
    try:
        if sample_app is not None:
            sample_socket = _bind(_LOOPBACK, settings.upstream_port)
        proxy_socket = _bind(_LOOPBACK, settings.port)
    except OSError as exc:
        if sample_socket is not None:
            sample_socket.close()
        print(f"tunnel demo: {exc}", file=sys.stderr)
        return 1
    sockets = [s for s in (sample_socket, proxy_socket) if s is not None]
    try:
        # Port 0 asks the system for a free port; what it chose is known once bound.
        upstream_port = sample_socket.getsockname()[1] if sample_socket else settings.upstream_port
        try:
            config = RewriteConfig(
                prefix=prefix,
                public_origin=f"http://{_LOOPBACK}:{proxy_socket.getsockname()[1]}",
                upstream_origin=f"http://{_LOOPBACK}:{upstream_port}",
            )
        except ValueError as exc:  # a prefix with "?", "//" or spaces
            print(f"tunnel demo: {exc}", file=sys.stderr)
            return 1
        asyncio.run(_serve_demo(config, settings, proxy_socket, sample_socket, sample_app))
    except KeyboardInterrupt:
        # A second Ctrl-C during shutdown: stop without a traceback.
        pass
    finally:
        for sock in sockets:
            sock.close()
    return 0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us: two servers share one process and one Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve_demo(
    config: RewriteConfig,
    settings: DemoSettings,
    proxy_socket: socket.socket,
    sample_socket: socket.socket | None,
    sample_app: Any,
) -> None:
    log_level = "warning" if settings.json else "info"
    servers: list[tuple[_Server, socket.socket]] = []
    if sample_socket is not None:
        sample = uvicorn.Config(sample_app, log_config=None, ws="none", lifespan="on")
        servers.append((_Server(sample), sample_socket))
    # The upstream's own Date and Server headers are forwarded; uvicorn adding its pair would double them.
    # Both servers share uvicorn's loggers, so the access log shows each request twice: as the browser
    # sent it (/demo/docs) and as the app received it (/docs).
    proxy = uvicorn.Config(
        DemoProxy(config),
        log_level=log_level,
        ws="none",
        lifespan="on",
        server_header=False,
        date_header=False,
        # The proxy appends the client to X-Forwarded-For itself; uvicorn must not replace the client first.
        proxy_headers=False,
    )
    servers.append((_Server(proxy), proxy_socket))
    # Our own lines say where things are; uvicorn's start-up and shutdown lines, printed once per server,
    # would only repeat them. Access lines (another logger) stay unless --json.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)

    def stop() -> None:
        for server, _ in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers off Unix
            loop.add_signal_handler(signum, stop)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers):
        if any(task.done() for task in tasks):
            stop()
            break
        await asyncio.sleep(0.02)
    else:
        _announce(config, settings, started_sample=sample_socket is not None)
    await asyncio.gather(*tasks)


def _announce(config: RewriteConfig, settings: DemoSettings, *, started_sample: bool) -> None:
    path_url = f"{config.public_origin}{config.prefix}/"
    if settings.json:
        event = {
            "event": "ready",
            "public_url": path_url,
            "path_url": path_url,
            "upstream": config.upstream_origin,
            "sample_app": started_sample,
        }
        print(json.dumps(event), flush=True)
        return
    source = "the sample pet store, started here" if started_sample else "your app"
    print(f"Forwarding {path_url} -> {config.upstream_origin} ({source})")
    if started_sample:
        print(f"Swagger UI: {path_url}docs")
        print(f"API:        {path_url}api/items")
    print("Press Ctrl-C to stop.", flush=True)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before any server starts so a busy port fails early with a clear message."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see agent.serve.bind
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


if __name__ == "__main__":
    sys.exit(main())
