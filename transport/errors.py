"""The project's error hierarchy, with the HTTP status each error suggests; no I/O.

```
ProxyError
├── ProtocolError
│   ├── LocalProtocolError      we broke the tunnel protocol
│   └── RemoteProtocolError     the peer did
├── TransportError
│   ├── ConnectionGone          the WebSocket connection no longer exists
│   └── SendFailed              retries exhausted
└── UpstreamError
    ├── UpstreamTimeout         also a TimeoutError
    └── UpstreamUnavailable
```

Every error carries a `status_hint`, like h11's `error_status_hint`: the status the gateway should answer
the public request with. A third-party exception is translated once, in the adapter that called the library,
with `raise SendFailed(...) from exc`.
"""

from __future__ import annotations

__all__ = [
    "ConnectionGone",
    "LocalProtocolError",
    "ProtocolError",
    "ProxyError",
    "RemoteProtocolError",
    "SendFailed",
    "TransportError",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class ProxyError(Exception):
    """The root of every error this project raises on purpose.

    Args:
        message: What went wrong, for logs and error pages (never a stack trace).
        status_hint: The HTTP status the public request should get; the class default when omitted.
    """

    default_status_hint: int = 500

    def __init__(self, message: str, *, status_hint: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_hint = self.default_status_hint if status_hint is None else status_hint


class ProtocolError(ProxyError):
    """A tunnel message broke the protocol.

    Args:
        message: What was wrong with it.
        field: The JSON field at fault (dotted for nested fields, e.g. ``"body_manifest.length"``), if any.
        status_hint: Overrides the class default status.
    """

    default_status_hint = 502

    def __init__(self, message: str, *, field: str | None = None, status_hint: int | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message, status_hint=status_hint)
        self.field = field
        self.reason = message


class LocalProtocolError(ProtocolError):
    """We were about to break the tunnel protocol (an invalid message, or one too big for the peer)."""

    default_status_hint = 500


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not valid tunnel protocol."""

    default_status_hint = 502


class TransportError(ProxyError):
    """Moving frames to a connection failed.

    Args:
        message: What went wrong.
        connection_id: The connection the frames were for.
        status_hint: Overrides the class default status.
    """

    default_status_hint = 502

    def __init__(self, message: str, *, connection_id: str, status_hint: int | None = None) -> None:
        super().__init__(message, status_hint=status_hint)
        self.connection_id = connection_id


class ConnectionGone(TransportError):  # noqa: N818 (the names of STYLE.md's tree)
    """The WebSocket connection no longer exists: the caller should forget it."""


class SendFailed(TransportError):  # noqa: N818 (the names of STYLE.md's tree)
    """A send was given up: retries exhausted, or an error that retrying cannot fix.

    Args:
        message: What went wrong.
        connection_id: The connection the frames were for.
        attempts: How many times the send was tried.
        error_code: The last error's code (an AWS error code such as ``"ForbiddenException"``, or the
            exception's class name).
        status_hint: Overrides the class default status.
    """

    def __init__(
        self,
        message: str,
        *,
        connection_id: str,
        attempts: int,
        error_code: str | None = None,
        status_hint: int | None = None,
    ) -> None:
        super().__init__(message, connection_id=connection_id, status_hint=status_hint)
        self.attempts = attempts
        self.error_code = error_code


class UpstreamError(ProxyError):
    """The local service behind the agent did not give a usable answer."""

    default_status_hint = 502


class UpstreamTimeout(UpstreamError, TimeoutError):  # noqa: N818 (the names of STYLE.md's tree)
    """The local service (or the agent) did not answer in time."""

    default_status_hint = 504


class UpstreamUnavailable(UpstreamError):  # noqa: N818 (the names of STYLE.md's tree)
    """The local service refused the connection or could not be reached."""

    default_status_hint = 502
