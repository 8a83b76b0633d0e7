"""The `tunnel` command line in a subprocess, driven through its `--json` events. Does I/O.

`start_tunnel(...)` starts `tunnel <args> --json`, waits (bounded) for its ready line and keeps reading
its events in the background, so a test can wait for a later one (`reconnecting`, a second `ready`).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TUNNEL_CLI", "RunningTunnel", "start_tunnel"]

TUNNEL_CLI = Path(sys.executable).parent / "tunnel"


@dataclass
class RunningTunnel:
    """A `tunnel ... --json` subprocess, the ready event it printed, and the events after it."""

    process: subprocess.Popen[str]
    ready: dict[str, Any]
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    @property
    def url(self) -> str:
        """The path-mode URL of the tunnel."""
        return str(self.ready["path_url"]).rstrip("/")

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """The next event that satisfies `predicate`; earlier ones are dropped.

        Raises:
            AssertionError: None came in time.
        """
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if predicate(event):
                return event
        raise AssertionError("the expected event did not come")

    def stop(self) -> int | None:
        """Ctrl-C, then kill if it does not stop; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode


def start_tunnel(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 30.0
) -> RunningTunnel:
    """Start `tunnel <args> --json` and wait (bounded) for its ready line.

    Raises:
        AssertionError: It exited or printed no ready event in time (with its standard error).
    """
    process = subprocess.Popen(
        [str(TUNNEL_CLI), *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    events: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                if line.startswith("{"):
                    events.put(json.loads(line))
        except ValueError:  # the stream was closed by stop()
            pass

    threading.Thread(target=read, daemon=True).start()
    running = RunningTunnel(process, {}, events)
    try:
        running.ready = running.wait_for(lambda event: event.get("event") == "ready", timeout)
    except AssertionError:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"`tunnel {' '.join(args)}` did not become ready: {err[-2000:]}") from None
    return running
