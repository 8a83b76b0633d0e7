"""The `tunnel emulate` subcommand: parses its options and runs an `Emulator` until Ctrl-C (I/O).

`agent/cli.py` registers `add_emulate_arguments` and `emulate_command` in its subcommand table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from lambda_app.emulate import Emulator, EmulatorConfig, EmulatorUrls

__all__ = ["add_emulate_arguments", "emulate_command", "run_emulate"]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_emulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `tunnel emulate` to its subparser."""
    parser.add_argument(
        "--port-ws", type=_port, default=9001, help="WebSocket API port, 0 for any free one (default 9001)"
    )
    parser.add_argument("--port-http", type=_port, default=9000, help="HTTP API port (default 9000)")
    parser.add_argument(
        "--port-management", type=_port, default=9002, help="@connections management API port (default 9002)"
    )
    parser.add_argument("--stage", default="prod", help="WebSocket API stage (default prod)")
    parser.add_argument(
        "--dynamodb-endpoint",
        metavar="URL",
        help="use this DynamoDB API (tables are created when missing) instead of starting a moto server",
    )
    parser.add_argument(
        "--dispatch-race-ms",
        metavar="N",
        type=_non_negative_int,
        default=0,
        help="refuse posts to each new connection with GoneException for a random 0..N ms after $connect",
    )
    parser.add_argument(
        "--cleanup-interval",
        metavar="SECONDS",
        type=_non_negative_float,
        default=60.0,
        help="seconds between scheduled cleanup events, 0 for none (default 60)",
    )
    parser.add_argument(
        "--env",
        metavar="KEY=VALUE",
        type=_assignment,
        action="append",
        default=[],
        help="set a variable in the handler's environment (repeatable), e.g. TUNNEL_AUTH=token",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line per event instead of prose")


def emulate_command(args: argparse.Namespace) -> int:
    """Run `tunnel emulate` from parsed arguments.

    Args:
        args: The namespace `add_emulate_arguments` describes.

    Returns:
        The process exit status.
    """
    try:
        config = EmulatorConfig(
            port_ws=args.port_ws,
            port_http=args.port_http,
            port_management=args.port_management,
            stage=args.stage,
            dynamodb_endpoint=args.dynamodb_endpoint,
            env=dict(args.env),
            dispatch_race_ms=args.dispatch_race_ms,
            cleanup_interval=args.cleanup_interval,
        )
    except ValueError as exc:
        print(f"tunnel emulate: {exc}", file=sys.stderr)
        return 2
    return run_emulate(config, json_lines=args.json)


def run_emulate(config: EmulatorConfig, *, json_lines: bool = False) -> int:
    """Run the emulator with the real `lambda_app.handler` until Ctrl-C or SIGTERM.

    Args:
        config: Ports, limits and knobs.
        json_lines: Print JSON lines (``{"event": "ready", ...}``) instead of a summary.

    Returns:
        0 after a clean stop, 1 when the emulator could not start.
    """
    try:
        return asyncio.run(_run(config, json_lines))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 0


async def _run(config: EmulatorConfig, json_lines: bool) -> int:
    emulator = Emulator(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers off Unix
            loop.add_signal_handler(signum, stop.set)
    try:
        urls = await emulator.start()
    except (OSError, ValueError, ImportError) as exc:
        print(f"tunnel emulate: {exc}", file=sys.stderr)
        return 1
    try:
        _announce(urls, config, json_lines)
        await stop.wait()
    finally:
        await emulator.stop()
    if json_lines:
        print(json.dumps({"event": "stopped"}), flush=True)
    return 0


def _announce(urls: EmulatorUrls, config: EmulatorConfig, json_lines: bool) -> None:
    if json_lines:
        event = {
            "event": "ready",
            "websocket_url": urls.websocket_url,
            "http_url": urls.http_url,
            "management_url": urls.management_url,
            "dynamodb_endpoint": urls.dynamodb_endpoint,
        }
        print(json.dumps(event), flush=True)
        return
    dynamodb = urls.dynamodb_endpoint + ("" if config.dynamodb_endpoint else " (moto, in memory)")
    print("Emulating API Gateway, Lambda (lambda_app.handler) and DynamoDB on loopback:")
    print(f"  agents connect to   {urls.websocket_url}")
    print(f"  public requests at  {urls.http_url}<tunnel-id>/")
    print(f"  @connections        {urls.management_url}")
    print(f"  DynamoDB            {dynamodb}")
    if config.dispatch_race_ms:
        print(f"  dispatch race       posts refused for up to {config.dispatch_race_ms} ms after $connect")
    print("Press Ctrl-C to stop.", flush=True)
