"""Tests for transport/apigateway.py: PostToConnection with retries, through botocore's Stubber."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.stub import Stubber

from transport.apigateway import APIGatewayTransport, create_management_client, management_endpoint
from transport.base import broadcast
from transport.errors import ConnectionGone, LocalProtocolError, SendFailed
from transport.messages import ConnectionId
from transport.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

CID = ConnectionId("L0SM9cOFvHcCIhw=")
ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"
CONNECTED_AT = 1_700_000_000.0


class FakeClock:
    """A clock that only moves when the transport sleeps (or a test says so)."""

    def __init__(self, now: float = CONNECTED_AT) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return self.now


class Harness:
    """A real boto3 client under a Stubber, and a transport with a fake clock and recorded metrics."""

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.client: ApiGatewayManagementApiClient = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=ENDPOINT,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.stubber = Stubber(self.client)
        self.clock = FakeClock()
        self.metrics: list[dict[str, object]] = []
        self.transport = APIGatewayTransport(
            self.client,
            policy=policy or RetryPolicy(),
            sleep=self.clock.sleep,
            monotonic=self.clock.time,
            now=self.clock.time,
            rng=lambda: 0.0,
            emit_metric=lambda line: self.metrics.append(json.loads(line)),
        )

    def ok(self, data: str = "{}", connection_id: str = CID) -> None:
        self.stubber.add_response(
            "post_to_connection", {}, {"ConnectionId": connection_id, "Data": data.encode()}
        )

    def fail(self, code: str, status: int, connection_id: str = CID) -> None:
        self.stubber.add_client_error(
            "post_to_connection",
            service_error_code=code,
            service_message=code,
            http_status_code=status,
            expected_params={"ConnectionId": connection_id, "Data": b"{}"},
        )


@pytest.fixture
def harness() -> Iterator[Harness]:
    """A harness whose stubbed responses must all be used by the end of the test."""
    harness = Harness()
    with harness.stubber:
        yield harness
        harness.stubber.assert_no_pending_responses()


def test_endpoint_is_https_with_stage() -> None:
    """The management endpoint is https://{domain}/{stage}, never wss://."""
    assert management_endpoint("abc.execute-api.eu-west-1.amazonaws.com", "prod") == (
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    )
    with pytest.raises(ValueError, match="bare host"):
        management_endpoint("wss://abc.execute-api.eu-west-1.amazonaws.com", "prod")
    with pytest.raises(ValueError, match="empty"):
        management_endpoint("abc", "")


def test_created_client_points_at_the_endpoint() -> None:
    """create_management_client builds a boto3 client whose endpoint is the stage's https URL."""
    client = create_management_client(
        "abc.execute-api.us-east-1.amazonaws.com",
        "dev",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert client.meta.endpoint_url == "https://abc.execute-api.us-east-1.amazonaws.com/dev"


def test_frames_are_posted_in_order(harness: Harness) -> None:
    """Each frame becomes one PostToConnection call, in order, with the frame as UTF-8 data."""
    harness.ok('{"type":"ping"}')
    harness.ok('{"type":"pong"}')
    harness.transport.send(CID, ['{"type":"ping"}', '{"type":"pong"}'])
    assert harness.clock.sleeps == []
    assert harness.metrics[-1]["Outcome"] == "delivered"
    assert harness.metrics[-1]["SendAttempts"] == 2


def test_gone_on_a_young_connection_is_retried(harness: Harness) -> None:
    """The dispatch race: GoneException right after connect is retried with backoff until it succeeds."""
    harness.fail("GoneException", 410)
    harness.fail("GoneException", 410)
    harness.ok()
    harness.transport.send(CID, ["{}"], connected_at=CONNECTED_AT - 0.2)
    assert harness.clock.sleeps == pytest.approx([0.1, 0.2])
    assert harness.metrics[-1]["SendRetries"] == 2


def test_gone_on_an_old_connection_is_final(harness: Harness) -> None:
    """GoneException on an old connection raises ConnectionGone at once, without sleeping."""
    harness.fail("GoneException", 410)
    with pytest.raises(ConnectionGone) as caught:
        harness.transport.send(CID, ["{}"], connected_at=CONNECTED_AT - 600)
    assert caught.value.connection_id == CID
    assert caught.value.status_hint == 502
    assert harness.clock.sleeps == []
    assert harness.metrics[-1]["Outcome"] == "gone"


def test_gone_without_an_age_is_final(harness: Harness) -> None:
    """Without connected_at, GoneException is not retried."""
    harness.fail("GoneException", 410)
    with pytest.raises(ConnectionGone):
        harness.transport.send(CID, ["{}"])


def test_gone_for_the_whole_budget_means_gone(harness: Harness) -> None:
    """A young connection still gone after every retry is reported as ConnectionGone."""
    for _ in range(5):
        harness.fail("GoneException", 410)
    with pytest.raises(ConnectionGone):
        harness.transport.send(CID, ["{}"], connected_at=CONNECTED_AT)
    assert len(harness.clock.sleeps) == 4


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("LimitExceededException", 429),
        ("InternalServerError", 500),
        ("BadGateway", 502),
        ("ServiceUnavailable", 503),
        ("GatewayTimeout", 504),
    ],
)
def test_throttling_and_server_errors_are_retried(harness: Harness, code: str, status: int) -> None:
    """LimitExceededException and 5xx are retried, then the send succeeds."""
    harness.fail(code, status)
    harness.ok()
    harness.transport.send(CID, ["{}"], connected_at=CONNECTED_AT - 3600)
    assert harness.clock.sleeps == pytest.approx([0.1])


@pytest.mark.parametrize(
    ("code", "status", "hint"), [("ForbiddenException", 403, 502), ("PayloadTooLargeException", 413, 413)]
)
def test_unfixable_errors_give_up_at_once(harness: Harness, code: str, status: int, hint: int) -> None:
    """ForbiddenException and PayloadTooLargeException raise SendFailed after one attempt."""
    harness.fail(code, status)
    with pytest.raises(SendFailed) as caught:
        harness.transport.send(CID, ["{}"], connected_at=CONNECTED_AT)
    assert (caught.value.attempts, caught.value.error_code, caught.value.status_hint) == (1, code, hint)
    assert harness.clock.sleeps == []
    assert harness.metrics[-1]["Outcome"] == "given_up"


def test_retries_stop_at_the_attempt_limit(harness: Harness) -> None:
    """Endless throttling ends in SendFailed after max_attempts, having slept within the 1.5 s budget."""
    for _ in range(5):
        harness.fail("LimitExceededException", 429)
    with pytest.raises(SendFailed, match="retries exhausted after 5") as caught:
        harness.transport.send(CID, ["{}"])
    assert caught.value.attempts == 5
    assert sum(harness.clock.sleeps) <= 1.5
    assert harness.metrics[-1] == harness.metrics[-1] | {
        "Outcome": "exhausted",
        "SendAttempts": 5,
        "SendRetries": 4,
    }


def test_the_time_budget_stops_retries_before_the_attempts_do() -> None:
    """With attempts to spare, endless throttling stops once the next sleep would pass the 1.5 s budget."""
    harness = Harness(RetryPolicy(max_attempts=50))
    with harness.stubber:
        for _ in range(5):
            harness.fail("LimitExceededException", 429)
        with pytest.raises(SendFailed) as caught:
            harness.transport.send(CID, ["{}"])
        harness.stubber.assert_no_pending_responses()
    # 100 + 200 + 400 + 800 ms = 1.5 s; the next delay (max_delay, 1 s) would end past the budget.
    assert harness.clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert caught.value.attempts == 5
    assert harness.metrics[-1]["Outcome"] == "exhausted"


def test_a_tighter_budget_means_fewer_attempts() -> None:
    """A 0.35 s budget allows the 100 and 200 ms sleeps only: three attempts, then SendFailed."""
    harness = Harness(RetryPolicy(budget=0.35))
    with harness.stubber:
        for _ in range(3):
            harness.fail("InternalServerError", 500)
        with pytest.raises(SendFailed) as caught:
            harness.transport.send(CID, ["{}"])
        harness.stubber.assert_no_pending_responses()
    assert caught.value.attempts == 3
    assert sum(harness.clock.sleeps) <= 0.35


def test_exhaustion_is_logged_as_such(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """The last attempt of an exhausted send logs "exhausted", and an unfixable error logs "give_up"."""
    for _ in range(5):
        harness.fail("LimitExceededException", 429)
    harness.fail("ForbiddenException", 403)
    with caplog.at_level(logging.WARNING, logger="transport.apigateway"), pytest.raises(SendFailed):
        harness.transport.send(CID, ["{}"])
    with caplog.at_level(logging.WARNING, logger="transport.apigateway"), pytest.raises(SendFailed):
        harness.transport.send(CID, ["{}"])
    decisions = [json.loads(record.getMessage())["decision"] for record in caplog.records]
    assert decisions == ["retry", "retry", "retry", "retry", "exhausted", "give_up"]


def test_failure_midway_counts_only_attempted_frames(harness: Harness) -> None:
    """When the second of three frames fails for good, the summary counts the attempts actually made."""
    harness.ok()
    harness.fail("ForbiddenException", 403)
    with pytest.raises(SendFailed):
        harness.transport.send(CID, ["{}", "{}", "{}"])
    assert (harness.metrics[-1]["SendAttempts"], harness.metrics[-1]["SendRetries"]) == (2, 0)


def test_slow_calls_use_up_the_budget() -> None:
    """Time spent inside failing calls counts against the budget, so fewer retries are made."""
    harness = Harness()

    class SlowFailingClient:
        def post_to_connection(self, *, Data: bytes, ConnectionId: str) -> object:  # noqa: N803
            harness.clock.now += 0.7  # each call times out slowly
            raise ReadTimeoutError(endpoint_url=ENDPOINT)

        def delete_connection(self, *, ConnectionId: str) -> object:  # noqa: N803
            return {}

    harness.transport.client = SlowFailingClient()
    with pytest.raises(SendFailed) as caught:
        harness.transport.send(CID, ["{}"])
    # 0.7 (call) + 0.1 (sleep) + 0.7 (call) = 1.5 s: the next 0.2 s sleep would pass the 1.5 s budget.
    assert caught.value.attempts == 2
    assert caught.value.error_code == "ReadTimeoutError"
    assert harness.clock.sleeps == pytest.approx([0.1])


def test_connection_errors_are_retried() -> None:
    """A client-side connection error is retried like throttling."""
    harness = Harness()
    calls: list[str] = []

    class FlakyClient:
        def post_to_connection(self, *, Data: bytes, ConnectionId: str) -> object:  # noqa: N803
            calls.append(ConnectionId)
            if len(calls) == 1:
                raise EndpointConnectionError(endpoint_url=ENDPOINT)
            return {}

        def delete_connection(self, *, ConnectionId: str) -> object:  # noqa: N803
            return {}

    harness.transport.client = FlakyClient()
    harness.transport.send(CID, ["{}"])
    assert calls == [CID, CID]


def test_bugs_are_not_swallowed() -> None:
    """An exception that is neither AWS nor network (a bug) propagates unchanged."""
    harness = Harness()

    class BuggyClient:
        def post_to_connection(self, *, Data: bytes, ConnectionId: str) -> object:  # noqa: N803
            raise KeyError("bug")

        def delete_connection(self, *, ConnectionId: str) -> object:  # noqa: N803
            return {}

    harness.transport.client = BuggyClient()
    with pytest.raises(KeyError):
        harness.transport.send(CID, ["{}"])


def test_bugs_in_close_are_not_swallowed() -> None:
    """close() lets an exception that is neither AWS nor network propagate unchanged."""

    class BuggyClient:
        def post_to_connection(self, *, Data: bytes, ConnectionId: str) -> object:  # noqa: N803
            return {}

        def delete_connection(self, *, ConnectionId: str) -> object:  # noqa: N803
            raise KeyError("bug")

    with pytest.raises(KeyError):
        APIGatewayTransport(BuggyClient()).close(CID)


def test_oversized_frame_is_refused_before_any_call(harness: Harness) -> None:
    """A frame above the 128 KB message limit raises LocalProtocolError (413) and posts nothing."""
    with pytest.raises(LocalProtocolError) as caught:
        harness.transport.send(CID, ["{}", "x" * 130_000])
    assert caught.value.status_hint == 413


def test_every_attempt_is_logged_as_json(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """Each attempt logs one JSON line with the connection, attempt number, error code and delay."""
    harness.fail("LimitExceededException", 429)
    harness.ok()
    with caplog.at_level(logging.INFO, logger="transport.apigateway"):
        harness.transport.send(CID, ["{}"], connected_at=CONNECTED_AT - 1)
    records = [json.loads(record.getMessage()) for record in caplog.records]
    assert records == [
        {
            "event": "post_to_connection",
            "connection_id": CID,
            "attempt": 1,
            "error_code": "LimitExceededException",
            "decision": "retry",
            "delay_ms": 100.0,
            "connection_age_ms": 1000,
        },
        {
            "event": "post_to_connection",
            "connection_id": CID,
            "attempt": 2,
            "error_code": None,
            "decision": "delivered",
            "delay_ms": None,
            "connection_age_ms": None,
        },
    ]
    assert caplog.records[0].levelno == logging.WARNING


def test_summary_metric_is_embedded_metric_format(harness: Harness) -> None:
    """Each send emits one CloudWatch EMF document declaring SendAttempts and SendRetries by Outcome."""
    harness.fail("InternalServerError", 500)
    harness.ok()
    harness.transport.send(CID, ["{}"])
    (document,) = harness.metrics
    directive = document["_aws"]
    assert isinstance(directive, dict)
    assert directive["Timestamp"] == int(CONNECTED_AT * 1000 + 100)
    (metric_set,) = directive["CloudWatchMetrics"]
    assert metric_set["Namespace"] == "HttpTunnel"
    assert metric_set["Dimensions"] == [["Outcome"]]
    assert {metric["Name"] for metric in metric_set["Metrics"]} == {"SendAttempts", "SendRetries"}
    assert (document["Outcome"], document["SendAttempts"], document["SendRetries"]) == ("delivered", 2, 1)


def test_default_metric_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Without an emit_metric, the EMF line is printed to stdout, where Lambda ships it to CloudWatch."""
    harness = Harness()
    transport = APIGatewayTransport(harness.client, sleep=harness.clock.sleep)
    harness.ok()
    with harness.stubber:
        transport.send(CID, ["{}"])
    line = capsys.readouterr().out.strip()
    assert json.loads(line)["Outcome"] == "delivered"


def test_broadcast_delivers_every_message_before_returning(harness: Harness) -> None:
    """A broadcast to many connections has made every PostToConnection call when it returns."""
    targets = [ConnectionId(f"conn-{index}") for index in range(25)]
    for target in targets:
        harness.ok(connection_id=target)
    failures = broadcast(harness.transport, targets, ["{}"])
    assert failures == {}
    harness.stubber.assert_no_pending_responses()
    assert len(harness.metrics) == 25


def test_broadcast_reports_gone_connections_and_continues(harness: Harness) -> None:
    """A gone connection in a broadcast is reported while the others still receive the message."""
    harness.ok(connection_id="a")
    harness.fail("GoneException", 410, connection_id="b")
    harness.ok(connection_id="c")
    failures = broadcast(harness.transport, [ConnectionId("a"), ConnectionId("b"), ConnectionId("c")], ["{}"])
    assert list(failures) == ["b"]
    assert isinstance(failures[ConnectionId("b")], ConnectionGone)


def test_close_deletes_the_connection(harness: Harness) -> None:
    """close() calls DeleteConnection for the connection."""
    harness.stubber.add_response("delete_connection", {}, {"ConnectionId": CID})
    harness.transport.close(CID)


def test_closing_a_gone_connection_is_fine(harness: Harness) -> None:
    """close() on a connection that is already gone succeeds quietly."""
    harness.stubber.add_client_error("delete_connection", "GoneException", "gone", 410)
    harness.transport.close(CID)


def test_close_refused_is_send_failed(harness: Harness) -> None:
    """close() refused by API Gateway raises SendFailed with the AWS code."""
    harness.stubber.add_client_error("delete_connection", "ForbiddenException", "no", 403)
    with pytest.raises(SendFailed) as caught:
        harness.transport.close(CID)
    assert caught.value.error_code == "ForbiddenException"


# The wire: a client from create_management_client, its HTTP requests answered by a script ---------------

WIRE_DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"
_Step = tuple[int, str | None] | Exception


class _RawBody:
    """The raw stream botocore reads a response body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kwargs: object) -> Iterator[bytes]:
        yield self._body


class Wire:
    """A real management client (botocore parses every answer, as from AWS) and a transport over it."""

    def __init__(self, *steps: _Step, config: Config | None = None) -> None:
        extra = {} if config is None else {"config": config}
        self.client = create_management_client(
            WIRE_DOMAIN,
            "prod",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            **extra,
        )
        self.steps = list(steps)
        self.requests: list[AWSPreparedRequest] = []
        # before-send hooks may return a response (botocore-stubs types hooks as returning None).
        self.client.meta.events.register("before-send", cast("Callable[..., None]", self._answer))
        self.clock = FakeClock()
        self.transport = APIGatewayTransport(
            self.client,
            sleep=self.clock.sleep,
            monotonic=self.clock.time,
            now=self.clock.time,
            rng=lambda: 0.0,
            emit_metric=lambda _line: None,
        )

    def _answer(self, request: AWSPreparedRequest, **_kwargs: object) -> AWSResponse:
        """Answer one request as API Gateway would: a status and an x-amzn-ErrorType, or a network error."""
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        status, code = step
        headers = {"Content-Type": "application/json"}
        if code is not None:
            headers["x-amzn-ErrorType"] = code
        body = b"" if status == 200 else json.dumps({"message": code}).encode()
        return AWSResponse(request.url, status, HTTPHeaders.from_dict(headers), _RawBody(body))


def test_wire_client_makes_one_http_request_per_attempt() -> None:
    """botocore does not retry under the transport: 429, 500 and 503 then 200 are exactly four requests."""
    wire = Wire((429, "LimitExceededException"), (500, None), (503, None), (200, None))
    wire.transport.send(CID, ['{"type":"ping"}'])
    assert len(wire.requests) == 4
    assert wire.clock.sleeps == pytest.approx([0.1, 0.2, 0.4])
    request = wire.requests[-1]
    assert (request.method, request.url) == (
        "POST",
        f"https://{WIRE_DOMAIN}/prod/@connections/L0SM9cOFvHcCIhw%3D",
    )
    assert request.body == b'{"type":"ping"}'


def test_wire_client_keeps_its_defaults_under_a_callers_config() -> None:
    """A config passed to create_management_client is merged over the no-retry, short-timeout defaults."""
    wire = Wire(config=Config(read_timeout=1))
    options = vars(wire.client.meta.config)
    assert options["retries"] == {"mode": "standard", "total_max_attempts": 1}
    assert (options["connect_timeout"], options["read_timeout"]) == (2, 1)


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url=f"https://{WIRE_DOMAIN}"),
        ConnectTimeoutError(endpoint_url=f"https://{WIRE_DOMAIN}"),
        ReadTimeoutError(endpoint_url=f"https://{WIRE_DOMAIN}"),
        ConnectionClosedError(endpoint_url=f"https://{WIRE_DOMAIN}"),
    ],
    ids=type,
)
def test_wire_connection_errors_and_timeouts_are_retried(error: Exception) -> None:
    """A connection error or timeout raised by botocore's HTTP layer is retried once, then delivered."""
    wire = Wire(error, (200, None))
    wire.transport.send(CID, ["{}"], connected_at=CONNECTED_AT - 3600)
    assert len(wire.requests) == 2
    assert wire.clock.sleeps == pytest.approx([0.1])


def test_wire_connection_errors_that_last_end_in_send_failed() -> None:
    """A network that stays down ends in SendFailed naming the botocore error, within the budget."""
    wire = Wire(*[EndpointConnectionError(endpoint_url=f"https://{WIRE_DOMAIN}") for _ in range(5)])
    with pytest.raises(SendFailed) as caught:
        wire.transport.send(CID, ["{}"])
    assert (caught.value.attempts, caught.value.error_code) == (5, "EndpointConnectionError")
    assert isinstance(caught.value.__cause__, EndpointConnectionError)
    assert sum(wire.clock.sleeps) <= 1.5


def test_wire_gone_is_retried_while_young_and_final_when_old() -> None:
    """410 GoneException from AWS: retried 0.2 s after $connect, ConnectionGone at once an hour later."""
    young = Wire((410, "GoneException"), (410, "GoneException"), (200, None))
    young.transport.send(CID, ["{}"], connected_at=CONNECTED_AT - 0.2)
    assert len(young.requests) == 3
    old = Wire((410, "GoneException"))
    with pytest.raises(ConnectionGone):
        old.transport.send(CID, ["{}"], connected_at=CONNECTED_AT - 3600)
    assert len(old.requests) == 1
    assert old.clock.sleeps == []


@pytest.mark.parametrize(
    ("status", "code", "hint"), [(403, "ForbiddenException", 502), (413, "PayloadTooLargeException", 413)]
)
def test_wire_unfixable_errors_are_one_request(status: int, code: str, hint: int) -> None:
    """403 ForbiddenException and 413 PayloadTooLargeException as AWS sends them: one request, SendFailed."""
    wire = Wire((status, code))
    with pytest.raises(SendFailed) as caught:
        wire.transport.send(CID, ["{}"], connected_at=CONNECTED_AT)
    assert len(wire.requests) == 1
    assert (caught.value.error_code, caught.value.status_hint) == (code, hint)
