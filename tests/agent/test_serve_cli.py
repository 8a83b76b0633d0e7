"""Tests for agent/serve_cli.py: `tunnel serve` and `tunnel up` options, the kept resume secret, the
printed events, and start-up failures that must be plain messages."""

from __future__ import annotations

import argparse
import json
import socket
import stat
from pathlib import Path

import pytest

from agent.agent_cli import host_header_for
from agent.cli import build_parser, main
from agent.serve_cli import format_server_event, load_resume_secret, serve_options_from_args

SECRET = "x" * 40


def _serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_serve_defaults_are_a_closed_loopback_gateway(tmp_path: Path) -> None:
    """Without options: loopback, port 8080, host mode on localhost, and a generated shared token."""
    options = serve_options_from_args(_serve_args(), {"XDG_STATE_HOME": str(tmp_path)})
    assert (options.host, options.port, options.domain) == ("127.0.0.1", 8080, "localhost")
    assert options.settings.auth_mode == "token"
    assert options.settings.shared_token is not None
    assert len(options.settings.shared_token) >= 24
    assert options.state_dir == tmp_path / "http-tunnel"
    assert options.output == "log"


def test_serve_takes_the_environment_when_options_are_absent() -> None:
    """TUNNEL_* variables fill in what the command line leaves out; options win over them."""
    environ = {
        "TUNNEL_PUBLIC_URL": "https://tunnel.example.com",
        "TUNNEL_DOMAIN": "",
        "TUNNEL_AUTH": "jwt",
        "TUNNEL_JWT_SECRET": SECRET,
        "TUNNEL_BODY_LIMIT": "1000",
    }
    options = serve_options_from_args(_serve_args("--body-limit", "2000", "--json"), environ)
    assert options.public_url == "https://tunnel.example.com"
    assert options.domain is None
    assert options.settings.auth_mode == "jwt"
    assert options.settings.jwt_secret == SECRET
    assert options.body_limit == 2000
    assert options.output == "json"


@pytest.mark.parametrize(
    ("argv", "environ", "complaint"),
    [
        (["--auth", "jwt"], {}, "TUNNEL_J"),
        (["--token", "short"], {}, "at least 16"),
        ([], {"TUNNEL_BODY_LIMIT": "lots"}, "--body-limit"),
        (["--timeout", "-1"], {}, "response_timeout"),
        (["--public-url", "tunnel.example.com"], {}, "public_url"),
    ],
)
def test_serve_refuses_what_cannot_work(argv: list[str], environ: dict[str, str], complaint: str) -> None:
    """An impossible configuration is refused before anything starts, naming what is wrong."""
    with pytest.raises(ValueError, match=complaint):
        serve_options_from_args(_serve_args(*argv), environ)


def test_resume_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    """The first start writes a secret readable by its owner only; later starts read the same one."""
    first = load_resume_secret(tmp_path / "state", {})
    path = tmp_path / "state" / "resume-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32
    assert load_resume_secret(tmp_path / "state", {}) == first
    assert load_resume_secret(tmp_path / "state", {"TUNNEL_RESUME_SECRET": SECRET}) == SECRET.encode()
    with pytest.raises(ValueError, match="32 bytes"):
        load_resume_secret(tmp_path / "state", {"TUNNEL_RESUME_SECRET": "short"})


def test_a_damaged_resume_secret_is_replaced(tmp_path: Path) -> None:
    """A secret file that is not hex is replaced rather than trusted."""
    (tmp_path / "resume-secret").write_text("not hex at all")
    secret = load_resume_secret(tmp_path, {})
    assert bytes.fromhex((tmp_path / "resume-secret").read_text()) == secret


READY = {
    "event": "ready",
    "listen": "http://127.0.0.1:8080",
    "public_url": "http://127.0.0.1:8080",
    "path_url": "http://127.0.0.1:8080/{tunnel_id}/",
    "host_url": "http://{tunnel_id}.localhost:8080",
    "agent_endpoint": "ws://127.0.0.1:8080/",
    "auth": "token",
    "token": "generated-token-value",
}


def test_ready_is_printed_with_the_agent_command() -> None:
    """The prose form says where the gateway is and the exact command an agent runs, token included."""
    text = format_server_event(READY, "log")
    assert text is not None
    assert "Path mode   http://127.0.0.1:8080/{tunnel_id}/" in text
    assert "Host mode   http://{tunnel_id}.localhost:8080" in text
    assert "tunnel agent PORT --endpoint ws://127.0.0.1:8080/ --token generated-token-value" in text
    assert json.loads(format_server_event(READY, "json") or "") == READY
    assert format_server_event(READY, "quiet") is None


def test_up_on_a_taken_port_fails_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    """`tunnel up` on a gateway port in use exits 1 with one line naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["up", "3000", "--gateway-port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_serve_with_a_bad_option_fails_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    """`tunnel serve --auth jwt` without keys exits 2 with the reason, before binding anything."""
    assert main(["serve", "--auth", "jwt", "--port", "0"]) == 2
    assert "tunnel serve:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (None, None),
        ("preserve", None),
        ("rewrite", "127.0.0.1:3000"),
        ("app.test:8000", "app.test:8000"),
    ],
)
def test_host_header_option(option: str | None, expected: str | None) -> None:
    """--host-header keeps the public Host, rewrites it to the local address, or sends a given one."""
    assert host_header_for(option, "127.0.0.1", 3000) == expected


def test_host_header_rewrite_brackets_ipv6_and_refuses_nonsense() -> None:
    """An IPv6 local host is bracketed; a value that is no host is refused with the option's name."""
    assert host_header_for("rewrite", "::1", 3000) == "[::1]:3000"
    with pytest.raises(ValueError, match="--host-header"):
        host_header_for("a b", "127.0.0.1", 3000)
