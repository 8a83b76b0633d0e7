"""Real servers on loopback for integration and browser tests: uvicorn in a background thread. Does I/O.

Each server listens on a socket bound to a free port before it starts, so there is no race for the port,
and is stopped when its `with` block ends, whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

__all__ = ["RunningServer", "closed_port", "serve_in_thread"]

_LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A server started by `serve_in_thread`."""

    port: int

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{_LOOPBACK}:{self.port}"


@contextlib.contextmanager
def serve_in_thread(
    app: Any = None,
    *,
    factory: Callable[[int], Any] | None = None,
    startup_timeout: float = 10.0,
    port: int = 0,
) -> Iterator[RunningServer]:
    """Serve an ASGI app with uvicorn on a free loopback port for the duration of a `with` block.

    Args:
        app: The ASGI application.
        factory: Instead of `app`: builds the application from the port it will listen on (a proxy needs
            its own public origin in its configuration).
        startup_timeout: Seconds to wait for the server to accept connections.
        port: The port to listen on; 0 for a free one.

    Yields:
        Where the server listens.

    Raises:
        RuntimeError: The server did not start in time.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((_LOOPBACK, port))
    sock.listen(128)
    port = int(sock.getsockname()[1])
    if factory is not None:
        try:
            app = factory(port)
        except BaseException:
            sock.close()
            raise
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
        # A proxy forwards its upstream's Date and Server headers; two servers' pairs would double them.
        server_header=False,
        date_header=False,
        # The demo proxy appends the client to X-Forwarded-For itself; uvicorn must not replace it first.
        proxy_headers=False,
        # A request still in flight (a browser's, a slow upstream's) must not hold up the test's teardown.
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    # Off the main thread uvicorn installs no signal handlers, so Ctrl-C still reaches pytest.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        yield RunningServer(port=port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])
