"""Runs inside a fresh virtual environment that has only boto3, against an unpacked `tunnel package` zip,
the way the Lambda runtime would: the task root first on `sys.path`, real-shaped events in, responses out.

Started by tests/integration/test_package_zip.py as ``python -I lambda_zip_driver.py TASK_ROOT FIXTURES``
with DynamoDB (moto) named by TUNNEL_DYNAMODB_ENDPOINT. It serves the WebSocket API's ``@connections``
endpoint itself and plays the agent there: every ``http_request`` posted to it is answered by invoking the
handler with a ``$default`` event, as API Gateway would. Prints one JSON report on stdout. Uses only the
standard library, boto3 and what the zip holds.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

__all__ = ["main"]

# What the zip must not bring along, and the venv must not have: the agent, its CLI dependencies, the tests.
FORBIDDEN = ("agent", "httpx", "websockets", "uvicorn", "moto", "pytest", "fastapi")
PAGE = b'<!doctype html><title>t</title><a href="/docs">docs</a>'


class _Context:
    """The Lambda context, as far as the handler uses it."""

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class _ConnectionsEndpoint(BaseHTTPRequestHandler):
    """API Gateway's ``@connections`` API: records every message posted to a connection."""

    posted: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        connection_id = unquote(self.path.rsplit("/", 1)[1])
        self.posted.put((connection_id, json.loads(body)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_DELETE(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _event(fixtures: Path, name: str, **context: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((fixtures / name).read_text(encoding="utf-8"))
    now_ms = int(time.time() * 1000)
    request_context = event.setdefault("requestContext", {})
    if "connectedAt" in request_context:
        request_context["connectedAt"] = now_ms - 60_000  # an established connection, past the dispatch race
        request_context["requestTimeEpoch"] = now_ms
    request_context.update(context)
    return event


def main() -> None:
    """Invoke the packaged handler with each kind of event and print what it answered."""
    task_root, fixtures = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path.insert(0, str(task_root))  # the Lambda runtime puts LAMBDA_TASK_ROOT first
    report: dict[str, Any] = {"forbidden_importable": [n for n in FORBIDDEN if importlib.util.find_spec(n)]}

    server = ThreadingHTTPServer(("127.0.0.1", 0), _ConnectionsEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(
        {
            "TUNNEL_AUTH": "none",
            "TUNNEL_PUBLIC_URL": "https://gw.example.com",
            "TUNNEL_MANAGEMENT_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}/prod",
            "TUNNEL_RESPONSE_TIMEOUT": "10",
            "TUNNEL_LOG_LEVEL": "WARNING",
        }
    )

    started = time.perf_counter()
    import boto3  # noqa: F401  (the runtime's own, timed apart)

    boto3_done = time.perf_counter()
    from lambda_app.handler import handler

    report["import_ms"] = {
        "boto3": (boto3_done - started) * 1000,
        "handler": (time.perf_counter() - boto3_done) * 1000,
    }
    import lambda_app

    report["lambda_app_file"] = lambda_app.__file__
    report["loaded_forbidden"] = sorted(n for n in FORBIDDEN if n in sys.modules)

    def invoke(event: dict[str, Any], request_id: str) -> Any:
        return handler(event, _Context(request_id))

    connection_id = "conn-zip-1="
    results: dict[str, Any] = {}
    results["connect"] = invoke(
        _event(fixtures, "websocket_connect_query_token.json", connectionId=connection_id), "r-connect"
    )
    results["ready"] = invoke(
        _event(fixtures, "websocket_default_text.json", connectionId=connection_id), "r-ready"
    )
    _, established = _ConnectionsEndpoint.posted.get(timeout=10)
    report["established"] = established
    tunnel_id = established["tunnel_id"]

    # The agent: answers the http_request posted to it through a $default invocation of its own.
    agent_saw: list[dict[str, Any]] = []

    def agent() -> None:
        while True:
            posted_to, frame = _ConnectionsEndpoint.posted.get()
            agent_saw.append(frame)
            if frame.get("type") != "http_request":
                continue
            answer = {
                "type": "http_response",
                "request_id": frame["request_id"],
                "status_code": 200,
                "headers": {"content-type": ["text/html; charset=utf-8"]},
                "body": base64.b64encode(PAGE).decode(),
                "processing_time_ms": 3,
            }
            event = _event(fixtures, "websocket_default_text.json", connectionId=posted_to)
            event["body"] = json.dumps(answer)
            invoke(event, "r-answer")

    threading.Thread(target=agent, daemon=True).start()

    request = _event(fixtures, "http_v2_get.json")
    request["rawPath"] = request["requestContext"]["http"]["path"] = f"/{tunnel_id}/search"
    response = invoke(request, "r-public")
    body = (
        base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"].encode()
    )
    results["public"] = {"statusCode": response["statusCode"], "body": body.decode("utf-8", "replace")}

    bad_frame = _event(fixtures, "websocket_default_text.json", connectionId=connection_id)
    bad_frame["body"] = "this is not a tunnel frame {"
    results["bad_frame"] = invoke(bad_frame, "r-bad-frame")

    for name in (
        "http_v1_put.json",  # names no connected tunnel
        "bad_http_v2_no_method.json",
        "bad_websocket_no_connection_id.json",
        "unknown_s3_notification.json",
        "scheduled_cleanup.json",
    ):
        answer = invoke(_event(fixtures, name), f"r-{name}")
        results[name] = {"statusCode": answer.get("statusCode"), "keys": sorted(answer)}
    results["disconnect"] = invoke(
        _event(fixtures, "websocket_disconnect.json", connectionId=connection_id), "r-disconnect"
    )
    time.sleep(0.2)  # the error frame for the bad frame reaches the agent thread
    report["results"] = results
    report["agent_saw"] = [
        {"type": frame.get("type"), "uri": frame.get("uri"), "code": frame.get("code")} for frame in agent_saw
    ]
    server.shutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
