"""`APIGatewayTransport`, which posts frames to API Gateway WebSocket connections with retries (boto3, I/O).

It calls `PostToConnection` through an injected `apigatewaymanagementapi` client, retries by the policy
of transport/retry.py (the dispatch race of DESIGN.md), logs every attempt as one JSON line, emits a
CloudWatch Embedded Metric Format summary per send, and maps AWS errors once into `ConnectionGone` and
`SendFailed`.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from transport.chunking import MAX_MESSAGE_BYTES
from transport.errors import ConnectionGone, LocalProtocolError, SendFailed
from transport.messages import ConnectionId
from transport.retry import DEFAULT_RETRY_POLICY, RetryPolicy, classify, delays, error_code

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

__all__ = [
    "METRIC_NAMESPACE",
    "APIGatewayTransport",
    "ManagementApiClient",
    "Outcome",
    "create_management_client",
    "management_endpoint",
]

#: How a send ended, as logged and graphed.
Outcome = Literal["delivered", "gone", "given_up", "exhausted"]

_LOGGER: Final = logging.getLogger("transport.apigateway")
#: The CloudWatch namespace of the send summary metric.
METRIC_NAMESPACE: Final = "HttpTunnel"


class ManagementApiClient(Protocol):
    """The part of boto3's `apigatewaymanagementapi` client that the transport uses."""

    def post_to_connection(self, *, Data: bytes, ConnectionId: str) -> object:  # noqa: N803 (boto3's names)
        """Send one message to one connection."""
        ...

    def delete_connection(self, *, ConnectionId: str) -> object:  # noqa: N803 (boto3's names)
        """Disconnect one connection."""
        ...


def management_endpoint(domain_name: str, stage: str) -> str:
    """Build the `@connections` endpoint of a WebSocket API: ``https://{domain}/{stage}``, never ``wss://``.

    Args:
        domain_name: The API's domain, as in the event's ``requestContext.domainName``.
        stage: The stage, as in ``requestContext.stage``.

    Returns:
        The HTTPS endpoint URL for boto3's ``endpoint_url``.

    Raises:
        ValueError: The domain carries a scheme or a path, or either part is empty.
    """
    if not domain_name or not stage:
        raise ValueError("domain_name and stage must not be empty")
    if "://" in domain_name or "/" in domain_name:
        raise ValueError(f"domain_name must be a bare host name, got {domain_name!r}")
    return f"https://{domain_name}/{stage.strip('/')}"


def create_management_client(
    domain_name: str, stage: str, **client_kwargs: Any
) -> ApiGatewayManagementApiClient:
    """Create a boto3 `apigatewaymanagementapi` client for one WebSocket API stage.

    botocore's own retries are switched off (one HTTP request per call) and its timeouts shortened, because
    `APIGatewayTransport` retries by its policy within its budget: botocore's default of up to 5 tries with
    60 s timeouts would stack under ours, blow the budget and hide attempts from the log. A ``config``
    passed in is merged over these defaults.

    Args:
        domain_name: The API's domain.
        stage: The stage.
        **client_kwargs: Passed to ``boto3.client`` (``region_name``, ``config`` ...).

    Returns:
        The client, ready to hand to `APIGatewayTransport`.
    """
    import boto3  # the `aws` extra; imported here so the rest of transport/ works without it
    from botocore.config import Config

    # One try per call, and 2 s / 5 s timeouts instead of botocore's 60 s (the Lambda edge uses the same).
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=5)
    extra = client_kwargs.pop("config", None)
    if extra is not None:
        config = config.merge(extra)
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=management_endpoint(domain_name, stage),
        config=config,
        **client_kwargs,
    )


@functools.cache
def _library_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(errors a send may raise, of which the transient ones), botocore's included when installed."""
    builtin: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)
    try:
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError
    except ImportError:  # pragma: no cover - botocore comes with boto3
        return (*builtin, OSError), builtin
    return (ClientError, BotoCoreError, OSError), (*builtin, HTTPClientError, BotoConnectionError)


class _StopError(Exception):
    """Carries a mapped error, its cause and the attempts spent from `_post` back to `send`."""

    def __init__(self, error: ConnectionGone | SendFailed, cause: Exception, attempts: int, outcome: Outcome):
        super().__init__(str(error))
        self.error = error
        self.cause = cause
        self.attempts = attempts
        self.outcome: Outcome = outcome


def _print_line(line: str) -> None:
    # Lambda sends stdout to CloudWatch Logs, which extracts metrics from EMF lines printed there.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class APIGatewayTransport:
    """A `Transport` that posts each frame with `PostToConnection`, retrying by a policy.

    Args:
        client: A boto3 `apigatewaymanagementapi` client (or anything with the same two methods).
        policy: When to retry and for how long.
        sleep: Waits between attempts (`time.sleep`; tests pass a recorder).
        monotonic: Measures the budget (`time.monotonic`).
        now: Wall-clock epoch seconds, for connection ages and metric timestamps (`time.time`).
        rng: Jitter source in [0, 1) (`random.random` when None).
        logger: Where each attempt's JSON line goes.
        emit_metric: Where the EMF summary line goes (stdout by default, as CloudWatch expects).
        metric_namespace: The CloudWatch namespace of the summary metric.
        max_message_bytes: Frames longer than this are refused before any call (API Gateway's 128 KB).
    """

    def __init__(
        self,
        client: ManagementApiClient,
        *,
        policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        rng: Callable[[], float] | None = None,
        logger: logging.Logger = _LOGGER,
        emit_metric: Callable[[str], None] = _print_line,
        metric_namespace: str = METRIC_NAMESPACE,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.client = client
        self.policy = policy
        self._sleep = sleep
        self._monotonic = monotonic
        self._now = now
        self._rng = rng
        self._logger = logger
        self._emit_metric = emit_metric
        self.metric_namespace = metric_namespace
        self.max_message_bytes = max_message_bytes

    def send(
        self, connection_id: ConnectionId, frames: Sequence[str], *, connected_at: float | None = None
    ) -> None:
        """Post frames, in order, to one connection; returns once every one was accepted.

        Args:
            connection_id: The API Gateway connection id.
            frames: Encoded messages, each within `max_message_bytes`.
            connected_at: When the connection opened, epoch seconds (``requestContext.connectedAt / 1000``).
                A `GoneException` is retried only while the connection is younger than the policy's
                `gone_retry_age`; when None, it is never retried.

        Raises:
            LocalProtocolError: A frame is too big to post (status 413); nothing was sent.
            ConnectionGone: API Gateway says the connection is gone (delete it, answer 502).
            SendFailed: Retries ran out, or the error cannot be fixed by retrying.
        """
        payloads = [frame.encode("utf-8") for frame in frames]
        for payload in payloads:
            if len(payload) > self.max_message_bytes:
                raise LocalProtocolError(
                    f"frame of {len(payload)} bytes exceeds API Gateway's {self.max_message_bytes}-byte "
                    "message limit; send it through TunnelProtocol, which splits bodies",
                    status_hint=413,
                )
        attempts = 0
        for posted, payload in enumerate(payloads, start=1):
            try:
                attempts += self._post(connection_id, payload, connected_at)
            except _StopError as stop:
                attempts += stop.attempts
                self._summary(connection_id, attempts, attempts - posted, stop.outcome)
                raise stop.error from stop.cause
        self._summary(connection_id, attempts, attempts - len(payloads), "delivered")

    def _post(self, connection_id: ConnectionId, payload: bytes, connected_at: float | None) -> int:
        """Post one payload with retries; return the attempts it took."""
        sendable, transient = _library_errors()
        started = self._monotonic()
        waits = delays(self.policy, self._rng)
        attempt = 0
        while True:
            attempt += 1
            try:
                self.client.post_to_connection(Data=payload, ConnectionId=connection_id)
            except Exception as exc:
                if not isinstance(exc, sendable) and not hasattr(exc, "response"):
                    raise
                code = error_code(exc)
                age = None if connected_at is None else self._now() - connected_at
                decision = classify(exc, connection_age=age, policy=self.policy, transient=transient)
                delay = next(waits, None) if decision == "retry" else None
                if delay is not None and self._monotonic() - started + delay > self.policy.budget + 1e-6:
                    delay = None
                step = decision if delay is not None or decision == "give_up" else "exhausted"
                self._log_attempt(connection_id, attempt, code, step, delay, age)
                if delay is None:
                    raise self._stop(connection_id, attempt, code, decision, exc) from exc
                self._sleep(delay)
            else:
                self._log_attempt(connection_id, attempt, None, "delivered", None, None)
                return attempt

    def _stop(
        self, connection_id: ConnectionId, attempts: int, code: str, decision: str, exc: Exception
    ) -> _StopError:
        if code == "GoneException":
            gone = ConnectionGone(f"connection {connection_id} is gone ({code})", connection_id=connection_id)
            return _StopError(gone, exc, attempts, "gone")
        outcome: Outcome = "given_up" if decision == "give_up" else "exhausted"
        verb = "gave up after" if outcome == "given_up" else "retries exhausted after"
        failed = SendFailed(
            f"PostToConnection to {connection_id} {verb} {attempts} attempt(s): {code}: {exc}",
            connection_id=connection_id,
            attempts=attempts,
            error_code=code,
            status_hint=413 if code == "PayloadTooLargeException" else None,
        )
        return _StopError(failed, exc, attempts, outcome)

    def _log_attempt(
        self,
        connection_id: ConnectionId,
        attempt: int,
        code: str | None,
        decision: str,
        delay: float | None,
        age: float | None,
    ) -> None:
        record = {
            "event": "post_to_connection",
            "connection_id": connection_id,
            "attempt": attempt,
            "error_code": code,
            "decision": decision,
            "delay_ms": None if delay is None else round(delay * 1000, 1),
            "connection_age_ms": None if age is None else round(age * 1000),
        }
        level = logging.INFO if code is None else logging.WARNING
        self._logger.log(level, json.dumps(record, separators=(",", ":")))

    def _summary(self, connection_id: ConnectionId, attempts: int, retries: int, outcome: Outcome) -> None:
        # CloudWatch Embedded Metric Format:
        # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
        document = {
            "_aws": {
                "Timestamp": int(self._now() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.metric_namespace,
                        "Dimensions": [["Outcome"]],
                        "Metrics": [
                            {"Name": "SendAttempts", "Unit": "Count"},
                            {"Name": "SendRetries", "Unit": "Count"},
                        ],
                    }
                ],
            },
            "Outcome": outcome,
            "SendAttempts": attempts,
            "SendRetries": retries,
            "connection_id": connection_id,
        }
        self._emit_metric(json.dumps(document, separators=(",", ":")))

    def close(self, connection_id: ConnectionId) -> None:
        """Disconnect a connection with `DeleteConnection`; one already gone is not an error.

        Raises:
            SendFailed: API Gateway refused (e.g. `ForbiddenException`).
        """
        try:
            self.client.delete_connection(ConnectionId=connection_id)
        except Exception as exc:
            sendable, _ = _library_errors()
            if not isinstance(exc, sendable) and not hasattr(exc, "response"):
                raise
            code = error_code(exc)
            if code == "GoneException":
                return
            raise SendFailed(
                f"DeleteConnection for {connection_id} failed: {code}: {exc}",
                connection_id=connection_id,
                attempts=1,
                error_code=code,
            ) from exc
