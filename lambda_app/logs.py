"""JSON log lines for the Lambda gateway: a formatter, the invocation's request id, and set-up (no I/O here).

Each record becomes one JSON object on one line (time, level, logger, message, the AWS request id of the
invocation when known, and the `extra` fields our code passes, such as connection, tunnel, request and
reason), which CloudWatch Logs Insights queries field by field. Keys that could carry a secret or user
data (authorization, cookie, token, body ...) are dropped, whoever passes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO

__all__ = [
    "REDACTED_KEYS",
    "JsonFormatter",
    "configure_logging",
    "current_request_id",
    "request_context",
]

#: `extra` keys never written, compared case-insensitively with ``-`` read as ``_``: bodies, tokens and
#: cookies stay out of the logs (issue 4).
REDACTED_KEYS: Final[frozenset[str]] = frozenset(
    {
        "authorization",
        "body",
        "cookie",
        "cookies",
        "set_cookie",
        "token",
        "resume_token",
        "jwt",
        "password",
        "secret",
    }
)

# What every LogRecord carries; anything else on a record came from `extra`.
_STANDARD_ATTRS: Final[frozenset[str]] = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    # Set by the Lambda runtime's own log filter; written as `aws_request_id` below.
    "aws_request_id",
}
_request_id: ContextVar[str | None] = ContextVar("aws_request_id", default=None)


def current_request_id() -> str | None:
    """The AWS request id of the invocation running in this context, if any."""
    return _request_id.get()


@contextlib.contextmanager
def request_context(aws_request_id: str | None) -> Iterator[None]:
    """Tag every log line written inside the block with this invocation's AWS request id.

    A context variable, so nested invocations (as `tunnel emulate` and the tests make) and threads each
    see their own id.

    Args:
        aws_request_id: The Lambda context's `aws_request_id`.
    """
    token = _request_id.set(aws_request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def _jsonable(value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if not _redacted(str(k))}
    return str(value)


def _redacted(key: str) -> bool:
    return key.lower().replace("-", "_") in REDACTED_KEYS


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line.

    Fields: ``time`` (ISO 8601 UTC, milliseconds), ``level``, ``logger``, ``message``, ``aws_request_id``
    (when an invocation is running), every `extra` field except the redacted ones, and ``exception`` (the
    formatted traceback, for the logs only) when the record has one.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render the record.

        Args:
            record: The log record.

        Returns:
            The JSON text, without a trailing newline.
        """
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id() or getattr(record, "aws_request_id", None)
        if request_id:
            document["aws_request_id"] = str(request_id)
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key in document or _redacted(key):
                continue
            document[key] = _jsonable(value)
        if record.exc_info:
            document["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: str, *, stream: TextIO | None = None) -> None:
    """Make the root logger write JSON lines at `level`; safe to call again.

    In Lambda the runtime has installed a handler on the root logger that forwards to CloudWatch Logs;
    it gets the JSON formatter, so each line stays one record. Where the root logger has no handler
    (`tunnel emulate`, a script), one writing to `stream` (stdout by default) is added.

    Args:
        level: A level name: DEBUG, INFO, WARNING, ERROR or CRITICAL.
        stream: Where a new handler writes.
    """
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream or sys.stdout))
    for handler in root.handlers:
        if not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter())
