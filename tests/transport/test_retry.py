"""Tests for transport/retry.py: backoff delays and the classification of send failures."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.retry import DEFAULT_RETRY_POLICY, RetryPolicy, classify, delays, error_code

BOTOCORE_TRANSIENT = (TimeoutError, ConnectionError, HTTPClientError, BotoConnectionError)


def client_error(code: str, status: int) -> ClientError:
    """A botocore ClientError as PostToConnection raises it."""
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PostToConnection")


def test_default_delays_double_from_100_ms() -> None:
    """Without jitter the delays are 100, 200, 400 and 800 ms: four retries within the 1.5 s budget."""
    assert list(delays(rng=lambda: 0.0)) == pytest.approx([0.1, 0.2, 0.4, 0.8])


def test_jitter_only_shortens() -> None:
    """Jitter shortens each delay by at most the jitter fraction, never lengthens it."""
    assert list(delays(rng=lambda: 0.999999)) == pytest.approx([0.075, 0.15, 0.3, 0.6], rel=1e-4)


def test_budget_bounds_the_total() -> None:
    """Delays stop before their sum would pass the budget."""
    policy = RetryPolicy(first_delay=0.5, max_attempts=10, budget=1.6, jitter=0)
    assert list(delays(policy)) == [0.5, 1.0]


def test_attempts_bound_the_count() -> None:
    """With max_attempts N there are at most N - 1 delays, and none for a single attempt."""
    assert len(list(delays(RetryPolicy(max_attempts=3, jitter=0)))) == 2
    assert list(delays(RetryPolicy(max_attempts=1))) == []


def test_max_delay_caps_each_delay() -> None:
    """No single delay exceeds max_delay."""
    policy = RetryPolicy(first_delay=0.1, max_delay=0.25, max_attempts=6, budget=10, jitter=0)
    assert list(delays(policy)) == pytest.approx([0.1, 0.2, 0.25, 0.25, 0.25])


@settings(max_examples=50, deadline=None)
@given(draws=st.lists(st.floats(0, 1, exclude_max=True), min_size=10, max_size=10))
def test_delays_always_respect_the_policy(draws: list[float]) -> None:
    """Whatever the random draws, the delays stay positive, within the attempts and the budget."""
    values = iter(draws)
    result = list(delays(DEFAULT_RETRY_POLICY, rng=lambda: next(values)))
    assert len(result) <= DEFAULT_RETRY_POLICY.max_attempts - 1
    assert sum(result) <= DEFAULT_RETRY_POLICY.budget + 1e-9
    assert all(value > 0 for value in result)


def test_default_rng_is_random() -> None:
    """Without an rng, delays still fall inside the jitter band."""
    first = next(delays())
    assert 0.075 <= first <= 0.1


@pytest.mark.parametrize(
    ("exc", "decision"),
    [
        (client_error("LimitExceededException", 429), "retry"),
        (client_error("InternalServerError", 500), "retry"),
        (client_error("SomethingNew", 503), "retry"),
        (client_error("SomethingNew", 429), "retry"),
        (client_error("ForbiddenException", 403), "give_up"),
        (client_error("PayloadTooLargeException", 413), "give_up"),
        (client_error("SomethingNew", 400), "give_up"),
        (EndpointConnectionError(endpoint_url="https://x"), "retry"),
        (ConnectionClosedError(endpoint_url="https://x"), "retry"),
        (ReadTimeoutError(endpoint_url="https://x"), "retry"),
        (ConnectTimeoutError(endpoint_url="https://x"), "retry"),
        (TimeoutError("slow"), "retry"),
        (ConnectionResetError("reset"), "retry"),
        (ValueError("bug"), "give_up"),
    ],
)
def test_classification(exc: BaseException, decision: str) -> None:
    """Throttling, 5xx, connection errors and timeouts are retried; other errors are not."""
    assert classify(exc, connection_age=60, transient=BOTOCORE_TRANSIENT) == decision


@pytest.mark.parametrize(
    ("age", "decision"),
    [(0.0, "retry"), (0.3, "retry"), (4.99, "retry"), (5.0, "give_up"), (3600, "give_up")],
)
def test_gone_is_retried_only_on_young_connections(age: float, decision: str) -> None:
    """GoneException is retried while the connection is younger than 5 s (the dispatch race), not after."""
    assert classify(client_error("GoneException", 410), connection_age=age) == decision


def test_gone_on_a_connection_of_unknown_age_is_final() -> None:
    """Without a known age, GoneException is taken at its word."""
    assert classify(client_error("GoneException", 410)) == "give_up"


def test_gone_age_is_configurable() -> None:
    """The age under which GoneException is retried comes from the policy."""
    policy = RetryPolicy(gone_retry_age=30)
    assert classify(client_error("GoneException", 410), connection_age=20, policy=policy) == "retry"


def test_error_code_names_aws_errors_and_others() -> None:
    """error_code returns the AWS code of a ClientError and the class name of anything else."""
    assert error_code(client_error("GoneException", 410)) == "GoneException"
    assert error_code(TimeoutError()) == "TimeoutError"


@pytest.mark.parametrize(
    "kwargs",
    [{"first_delay": -1}, {"multiplier": 0.5}, {"jitter": 1.0}, {"max_attempts": 0}, {"budget": -0.1}],
)
def test_bad_policy_is_refused(kwargs: dict[str, float]) -> None:
    """A policy with impossible numbers raises ValueError when built."""
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_delays_is_lazy() -> None:
    """delays() is a generator: it draws jitter only for the delays actually taken."""
    counter = itertools.count()
    generator = delays(rng=lambda: next(counter) * 0.0)
    next(generator)
    assert next(counter) == 1
