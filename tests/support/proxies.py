"""The demo proxy in front of an app, on loopback, for integration and browser tests. Does I/O."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from agent.demo import DemoProxy
from rewrite import RewriteConfig, Strategy
from tests.support.servers import RunningServer, serve_in_thread

__all__ = ["behind_demo_proxy"]


@contextlib.contextmanager
def behind_demo_proxy(
    upstream_origin: str,
    *,
    prefix: str,
    host: str = "127.0.0.1",
    strategy: Strategy = "full",
    inject_context: bool = True,
    timeout: float = 5.0,
) -> Iterator[RunningServer]:
    """Serve the demo proxy on a free loopback port in front of `upstream_origin`.

    Args:
        upstream_origin: Where the app listens.
        prefix: The tunnel's path prefix, or "" for host mode.
        host: The host of the proxy's public origin, `http://{host}:{port}`: a `*.localhost` name for
            host mode (browsers resolve it to loopback).
        strategy: The rewriting strategy.
        inject_context: Whether pages get the context script.
        timeout: Seconds the proxy waits for the app.

    Yields:
        Where the proxy listens.
    """

    def factory(port: int) -> DemoProxy:
        config = RewriteConfig(
            prefix=prefix,
            public_origin=f"http://{host}:{port}",
            upstream_origin=upstream_origin,
            strategy=strategy,
            inject_context=inject_context,
        )
        return DemoProxy(config, timeout=timeout)

    with serve_in_thread(factory=factory) as server:
        yield server
