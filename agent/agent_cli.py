"""`tunnel agent PORT --endpoint ws(s)://...`: options and environment into an `AgentConfig`; prints events.

Options fall back to `TUNNEL_*` environment variables, then to defaults. The agent's events are printed
as a live request log like ngrok's, as one JSON line each (`--json`), or not at all (`--quiet`). Does I/O
(stdout, signals, and the agent's network I/O).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Final, TextIO

from agent.tunnel import Agent, AgentConfig, AgentEvent, EventSink, OutputMode

__all__ = [
    "ENVIRONMENT_VARIABLES",
    "add_agent_arguments",
    "add_host_header_argument",
    "agent_command",
    "agent_config_from_args",
    "event_printer",
    "format_event",
    "host_header_for",
    "port_number",
    "port_or_zero",
    "run_agent_until_stopped",
]

#: Each option's environment variable, shown in `tunnel agent --help`.
ENVIRONMENT_VARIABLES: Final[dict[str, str]] = {
    "endpoint": "TUNNEL_ENDPOINT",
    "token": "TUNNEL_TOKEN",
    "concurrency": "TUNNEL_CONCURRENCY",
    "timeout": "TUNNEL_TIMEOUT",
    "handshake_timeout": "TUNNEL_HANDSHAKE_TIMEOUT",
    "heartbeat": "TUNNEL_HEARTBEAT",
    "local_host": "TUNNEL_LOCAL_HOST",
    "host_header": "TUNNEL_HOST_HEADER",
    "json": "TUNNEL_JSON",
    "quiet": "TUNNEL_QUIET",
}

_EPILOG = """\
environment variables (used when the option is not given):
  TUNNEL_ENDPOINT           --endpoint
  TUNNEL_TOKEN              --token (prefer it to --token: command lines are visible to other users)
  TUNNEL_CONCURRENCY        --concurrency
  TUNNEL_TIMEOUT            --timeout
  TUNNEL_HANDSHAKE_TIMEOUT  --handshake-timeout
  TUNNEL_HEARTBEAT          --heartbeat
  TUNNEL_LOCAL_HOST         --local-host
  TUNNEL_HOST_HEADER        --host-header
  TUNNEL_JSON=1             --json
  TUNNEL_QUIET=1            --quiet
"""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `tunnel agent` to its subparser.

    Args:
        parser: The `agent` subparser.
    """
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("port", metavar="PORT", type=port_number, help="local port of the app to expose")
    parser.add_argument(
        "--endpoint", metavar="URL", help="the gateway's WebSocket URL, ws://... or wss://... (required)"
    )
    parser.add_argument("--token", metavar="T", help="sent as 'Authorization: Bearer T' when connecting")
    parser.add_argument(
        "--concurrency", metavar="N", type=int, help="requests forwarded at once (default 64)"
    )
    parser.add_argument(
        "--timeout", metavar="S", type=float, help="seconds the local app has to answer (default 25)"
    )
    parser.add_argument(
        "--handshake-timeout", metavar="S", type=float, help="seconds to connect and be welcomed (default 10)"
    )
    parser.add_argument(
        "--heartbeat", metavar="S", type=float, help="seconds between heartbeats (default 300)"
    )
    parser.add_argument("--local-host", metavar="HOST", help="host of the local app (default 127.0.0.1)")
    add_host_header_argument(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", default=None, help="print one JSON line per event")
    output.add_argument("--quiet", action="store_true", default=None, help="print nothing")


def add_host_header_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--host-header` (shared by `tunnel agent` and `tunnel up`)."""
    parser.add_argument(
        "--host-header",
        metavar="H",
        help="Host header for the local app: 'preserve' the public one (default), 'rewrite' it to the local "
        "address (for dev servers that accept only their own host), or a value to send",
    )


def host_header_for(option: str | None, local_host: str, local_port: int) -> str | None:
    """The `Host` the agent sends to the local app for a `--host-header` value; None keeps the public one.

    Raises:
        ValueError: The value cannot be a Host header.
    """
    if option is None or option == "preserve":
        return None
    if option == "rewrite":
        host = f"[{local_host}]" if ":" in local_host else local_host
        return f"{host}:{local_port}"
    if not option.strip() or any(c in option for c in "\r\n\0 /"):
        raise ValueError(f"--host-header must be 'preserve', 'rewrite' or a host, got {option!r}")
    return option


def agent_config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> AgentConfig:
    """Build the agent's configuration from parsed options, falling back to the environment.

    Args:
        args: What `add_agent_arguments`' options parsed into.
        environ: The environment (`os.environ`).

    Returns:
        The configuration.

    Raises:
        ValueError: A value is missing or invalid; the message names the option.
    """

    def pick(name: str) -> str | None:
        value = getattr(args, name)
        if value is not None:
            return str(value)
        return environ.get(ENVIRONMENT_VARIABLES[name]) or None

    def number(name: str, kind: Callable[[str], float]) -> dict[str, float]:
        text = pick(name)
        if text is None:
            return {}
        try:
            return {name: kind(text)}
        except ValueError:
            option = "--" + name.replace("_", "-")
            raise ValueError(f"{option}: not a number: {text!r}") from None

    endpoint = pick("endpoint")
    if endpoint is None:
        raise ValueError(f"--endpoint (or {ENVIRONMENT_VARIABLES['endpoint']}) is required")

    def flag(name: str) -> bool:
        value = getattr(args, name)
        return bool(value) if value is not None else environ.get(ENVIRONMENT_VARIABLES[name], "") in _TRUE

    output: OutputMode = "json" if flag("json") else "quiet" if flag("quiet") else "log"
    numbers: dict[str, float] = {}
    numbers.update(number("concurrency", int))
    numbers.update(number("timeout", float))
    numbers.update(number("handshake_timeout", float))
    numbers.update(number("heartbeat", float))
    local_host = pick("local_host") or "127.0.0.1"
    return AgentConfig(
        endpoint=endpoint,
        local_port=args.port,
        local_host=local_host,
        host_header=host_header_for(pick("host_header"), local_host, args.port),
        token=pick("token"),
        concurrency=int(numbers.get("concurrency", 64)),
        request_timeout=numbers.get("timeout", 25.0),
        handshake_timeout=numbers.get("handshake_timeout", 10.0),
        heartbeat_interval=numbers.get("heartbeat", 300.0),
        output=output,
    )


def format_event(event: AgentEvent, mode: OutputMode, *, now: float | None = None) -> str | None:
    """Render one event as the CLI prints it.

    Args:
        event: The agent's event.
        mode: ``"log"`` for the live log, ``"json"`` for one JSON line, ``"quiet"`` for nothing.
        now: Epoch seconds for the log's time column; the current time when None.

    Returns:
        The text to print (without newline), or None to print nothing.
    """
    if mode == "quiet":
        return None
    if mode == "json":
        return json.dumps(event, separators=(", ", ": "))
    clock = time.strftime("%H:%M:%S", time.localtime(time.time() if now is None else now))
    kind = event.get("event")
    if kind == "ready":
        lines = [
            f"Tunnel {'resumed' if event.get('resumed') else 'ready'} in {event['handshake_ms']:.0f} ms"
            f" (id {event['tunnel_id']})",
            f"Forwarding  {event['path_url']} -> {event.get('local_origin', '')}",
        ]
        if event.get("host_url"):
            lines.append(f"            {event['host_url']} -> {event.get('local_origin', '')}")
        lines.append("Press Ctrl-C to stop.")
        return "\n".join(lines)
    if kind == "request":
        path = str(event["path"])
        path = path if len(path) <= 40 else path[:37] + "..."
        error = f"  {event['error']}" if event.get("error") else ""
        duration = f"{event['duration_ms']:.1f} ms"
        return f"{clock}  {event['method']:<7} {path:<40} {event['status']}  {duration:>10}{error}"
    if kind == "reconnecting":
        return f"{clock}  reconnecting in {event['delay_s']:.1f} s: {event['reason']}"
    if kind == "stopped":
        return f"{clock}  tunnel closed"
    return f"{clock}  {json.dumps(event)}"


def event_printer(mode: OutputMode, stream: TextIO | None = None) -> EventSink:
    """An event sink that prints each event with `format_event`.

    Args:
        mode: The output mode.
        stream: Where to print; standard output when None.

    Returns:
        The sink.
    """

    def sink(event: AgentEvent) -> None:
        text = format_event(event, mode)
        if text is not None:
            print(text, file=stream if stream is not None else sys.stdout, flush=True)

    return sink


async def run_agent_until_stopped(config: AgentConfig, on_event: EventSink) -> None:
    """Run the agent until Ctrl-C or SIGTERM, then let it shut down cleanly.

    Args:
        config: The agent's configuration.
        on_event: Receives its events.
    """
    task = asyncio.create_task(Agent(config, on_event=on_event).run())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # A second Ctrl-C cancels again, cutting the wait for in-flight requests short.
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers off Unix
            loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():  # we were cancelled ourselves, not the agent
            raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


def agent_command(args: argparse.Namespace) -> int:
    """Run `tunnel agent` from parsed arguments.

    Args:
        args: The parsed options.

    Returns:
        0 after Ctrl-C or SIGTERM, 2 for an invalid configuration.
    """
    try:
        config = agent_config_from_args(args, os.environ)
    except ValueError as exc:
        print(f"tunnel agent: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_agent_until_stopped(config, event_printer(config.output)))
    return 0


def port_number(text: str) -> int:
    """An argparse type: a TCP port from 1 to 65535."""
    return _port(text, lowest=1)


def port_or_zero(text: str) -> int:
    """An argparse type: a TCP port, or 0 for any free one."""
    return _port(text, lowest=0)


def _port(text: str, *, lowest: int) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not lowest <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port
