"""The retry policy for sends: backoff delays and exception classification, as plain data and functions.

Pure, like websockets' `backoff()` and `process_exception()`: nothing here sleeps or reads a clock; the
adapter that sends does. The policy answers the dispatch race of DESIGN.md: right after `$connect`, a
`PostToConnection` can fail with `GoneException` although the connection is fine.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "GIVE_UP_CODES",
    "RETRY_CODES",
    "Decision",
    "RetryPolicy",
    "classify",
    "delays",
    "error_code",
]

Decision = Literal["retry", "give_up"]

#: AWS error codes worth another try: throttling and server-side failures
#: (https://docs.aws.amazon.com/apigateway/latest/api/API_PostToConnection.html lists the 429).
RETRY_CODES: Final[frozenset[str]] = frozenset(
    {
        "LimitExceededException",
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
#: Codes that another try cannot fix (GoneException is decided by the connection's age instead).
GIVE_UP_CODES: Final[frozenset[str]] = frozenset(
    {"ForbiddenException", "PayloadTooLargeException", "AccessDeniedException", "BadRequestException"}
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try a send.

    Attributes:
        first_delay: Seconds before the first retry; each later one doubles (100, 200, 400 ms ...).
        multiplier: The growth factor between delays.
        max_delay: No single delay exceeds this.
        jitter: Each delay is shortened by a random fraction up to this, so racing senders spread out.
        max_attempts: Tries in all, the first included.
        budget: Seconds that all tries of one message may take, sleeps and calls included (each frame of a
            multi-frame send gets its own budget: only the first usually meets the dispatch race).
        gone_retry_age: A `GoneException` is retried while the connection is younger than this (seconds).
    """

    first_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 1.0
    jitter: float = 0.25
    max_attempts: int = 5
    budget: float = 1.5
    gone_retry_age: float = 5.0

    def __post_init__(self) -> None:
        if self.first_delay < 0 or self.max_delay < 0 or self.budget < 0 or self.gone_retry_age < 0:
            raise ValueError("delays, budget and ages must not be negative")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")


DEFAULT_RETRY_POLICY: Final = RetryPolicy()


def delays(
    policy: RetryPolicy = DEFAULT_RETRY_POLICY, rng: Callable[[], float] | None = None
) -> Iterator[float]:
    """Yield the seconds to wait before each retry, bounded by the attempts and the total budget.

    Args:
        policy: The policy.
        rng: Returns a float in [0, 1) for the jitter; `random.random` when None.

    Returns:
        At most ``max_attempts - 1`` delays whose sum stays within ``budget``.
    """
    draw = rng if rng is not None else random.random
    nominal = policy.first_delay
    spent = 0.0
    for _ in range(policy.max_attempts - 1):
        delay = min(nominal, policy.max_delay) * (1 - policy.jitter * draw())
        if spent + delay > policy.budget + 1e-9:
            return
        spent += delay
        yield delay
        nominal *= policy.multiplier


def error_code(exc: BaseException) -> str:
    """Name an exception the way logs and metrics show it.

    Args:
        exc: Any exception; botocore's `ClientError` carries the AWS code in ``response["Error"]["Code"]``.

    Returns:
        The AWS error code when there is one, else the exception's class name.
    """
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping) and isinstance(error.get("Code"), str) and error["Code"]:
            return str(error["Code"])
    return type(exc).__name__


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        metadata = response.get("ResponseMetadata")
        if isinstance(metadata, Mapping):
            status = metadata.get("HTTPStatusCode")
            if isinstance(status, int):
                return status
    return None


def classify(
    exc: BaseException,
    *,
    connection_age: float | None = None,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    transient: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError),
) -> Decision:
    """Decide whether a failed send is worth another try.

    Args:
        exc: What the send raised.
        connection_age: Seconds since the connection was opened, if known.
        policy: Supplies `gone_retry_age`.
        transient: Exception types meaning a network failure or timeout (an adapter adds its library's).

    Returns:
        ``"retry"`` for throttling, 5xx, transient network errors and a `GoneException` on a young
        connection; ``"give_up"`` for everything else, including a `GoneException` on a connection that is
        old or of unknown age.
    """
    code = error_code(exc)
    if code == "GoneException":
        young = connection_age is not None and connection_age < policy.gone_retry_age
        return "retry" if young else "give_up"
    if code in RETRY_CODES:
        return "retry"
    if code in GIVE_UP_CODES:
        return "give_up"
    status = _http_status(exc)
    if status is not None:
        return "retry" if status == 429 or status >= 500 else "give_up"
    if isinstance(exc, transient):
        return "retry"
    return "give_up"
