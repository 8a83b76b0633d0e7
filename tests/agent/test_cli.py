"""`tunnel demo` as a user runs it: a subprocess that announces itself, serves, and stops on Ctrl-C."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.cli import build_parser, main
from agent.sample_app import create_app
from tests.support.servers import closed_port, serve_in_thread

pytestmark = pytest.mark.integration

_SCRIPT = Path(sys.executable).with_name("tunnel")


def _command(*args: str) -> list[str]:
    """The installed `tunnel` script, or the module when the package is not installed as a script."""
    if _SCRIPT.exists():
        return [str(_SCRIPT), *args]
    return [sys.executable, "-m", "agent.cli", *args]


class _Demo:
    """A running `tunnel demo` process and the lines it printed."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            _command("demo", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._lines: queue.Queue[str] = queue.Queue()
        # A reader thread, so a process that never prints cannot block the test past its timeout.
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """The JSON ready event, once printed."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=5)
            raise AssertionError(f"no ready line; stderr: {stderr}") from None
        event: dict[str, Any] = json.loads(line)
        return event

    def stop(self) -> int:
        """Press Ctrl-C and wait for the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def demo_factory() -> Iterator[Any]:
    """Start `tunnel demo` processes that are killed at teardown, whatever the test did."""
    started: list[_Demo] = []

    def start(*args: str) -> _Demo:
        demo = _Demo(*args)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        if demo.process.poll() is None:
            demo.process.kill()
        demo.process.wait(timeout=10)
        for stream in (demo.process.stdout, demo.process.stderr):
            if stream is not None:
                stream.close()


def test_demo_starts_sample_app_and_serves_swagger_ui(demo_factory: Any) -> None:
    """With nothing on the upstream port, `tunnel demo --json` starts the sample app and serves its docs."""
    upstream_port = closed_port()
    demo = demo_factory(str(upstream_port), "--port", "0", "--prefix", "/t3st1d", "--json")
    event = demo.ready()
    assert event["event"] == "ready"
    assert event["upstream"] == f"http://127.0.0.1:{upstream_port}"
    assert event["sample_app"] is True
    assert event["path_url"].endswith("/t3st1d/")
    response = httpx.get(event["path_url"] + "docs", timeout=10)
    assert response.status_code == 200
    assert 'src="/t3st1d/static/swagger-ui/swagger-ui-bundle.js"' in response.text
    assert demo.stop() == 0


def test_demo_fronts_a_running_app(demo_factory: Any) -> None:
    """When an app already listens on the port, `tunnel demo` forwards to it instead of starting its own."""
    with serve_in_thread(create_app()) as app:
        demo = demo_factory(str(app.port), "--port", "0", "--json")
        event = demo.ready()
        assert event["sample_app"] is False
        assert event["upstream"] == app.origin
        response = httpx.get(event["path_url"] + "login", timeout=10)
        assert response.status_code == 303
        assert response.headers["location"] == "/demo/api/items"
        assert demo.stop() == 0


def test_demo_reports_busy_port(demo_factory: Any) -> None:
    """A proxy port that is taken ends the command with status 1 and a message saying which port."""
    with serve_in_thread(create_app()) as busy:
        demo = demo_factory(str(busy.port), "--port", str(busy.port), "--json")
        assert demo.process.wait(timeout=30) == 1
        assert demo.process.stderr is not None
        assert f"127.0.0.1:{busy.port}" in demo.process.stderr.read()


def test_parser_defaults() -> None:
    """`tunnel demo` without options forwards port 3000 under /demo on port 8080."""
    args = build_parser().parse_args(["demo"])
    assert (args.command, args.upstream_port, args.port, args.prefix, args.json) == (
        "demo",
        3000,
        8080,
        "/demo",
        False,
    )


def test_demo_rejects_bad_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    """A prefix that is not a plain path ends the command with status 1 and says why."""
    assert main(["demo", "0", "--port", "0", "--prefix", "/a b"]) == 1
    assert "prefix must be a plain path" in capsys.readouterr().err
