"""`tunnel package` for real: the zip, built for this machine's platform and Python, unpacked into an empty
read-only directory, answers real-shaped events in a fresh virtual environment that has only boto3; and two
builds give the same bytes.

Needs the package index (pip fetches wheels and boto3): skipped, saying so, when it cannot be reached.
DynamoDB is a moto server started here; the driver (lambda_zip_driver.py) plays API Gateway's side.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from agent.cli import main as tunnel_main
from agent.package import PackageOptions, build_package
from lambda_app.store_dynamodb import create_tables

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "fixtures" / "events"
DRIVER = Path(__file__).with_name("lambda_zip_driver.py")
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _index_reachable(scratch: Path) -> str | None:
    """None when pip can download from the configured index, else pip's last words."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"),
            *("--no-deps", "--only-binary=:all:", "--dest", str(scratch), "webencodings"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or ["pip failed"])[-1]


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package for x86_64 (this machine's platform) and this Python, as `tunnel package` builds it."""
    if os.uname().machine != "x86_64":
        pytest.skip("the zip is built for x86_64 and must run here")
    scratch = tmp_path_factory.mktemp("package")
    problem = _index_reachable(scratch / "probe")
    if problem is not None:
        pytest.skip(f"the package index cannot be reached, so no wheels can be fetched: {problem}")
    output = scratch / "fn.zip"
    status = tunnel_main(["package", "--output", str(output), "--arch", "x86_64", "--python", PYTHON])
    assert status == 0
    return output


@pytest.fixture(scope="module")
def boto3_only_python(tmp_path_factory: pytest.TempPathFactory, built_zip: Path) -> Path:
    """A fresh virtual environment holding boto3 (as the Lambda runtime does) and nothing of this project."""
    directory = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    python = directory / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "boto3"],
        check=True,
        timeout=600,
    )
    return python


@pytest.fixture
def task_root(tmp_path: Path, built_zip: Path) -> Iterator[Path]:
    """The zip unpacked into an empty directory that is then made read-only, like /var/task."""
    root = tmp_path / "task"
    root.mkdir()
    with zipfile.ZipFile(built_zip) as archive:
        archive.extractall(root)
    paths = [root, *root.rglob("*")]
    for path in paths:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield root
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def dynamodb_endpoint() -> Iterator[str]:
    """A moto DynamoDB server on a free loopback port with the gateway's two tables."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        create_tables(client, "tunnel-connections", "tunnel-pending")
        yield endpoint
    finally:
        server.stop()


def test_same_inputs_give_the_same_zip_bytes(built_zip: Path, tmp_path: Path) -> None:
    """A second build (same environment, same index) writes a zip identical to the first, byte for byte."""
    again = build_package(PackageOptions(output=tmp_path / "again.zip", arch="x86_64", python=PYTHON))
    assert (
        hashlib.sha256(again.output.read_bytes()).hexdigest()
        == hashlib.sha256(built_zip.read_bytes()).hexdigest()
    )
    assert again.bytecode_tag == sys.implementation.cache_tag
    with zipfile.ZipFile(built_zip) as archive:
        names = archive.namelist()
    assert "lambda_app/handler.py" in names
    assert f"lambda_app/__pycache__/handler.{sys.implementation.cache_tag}.pyc" in names
    assert not [n for n in names if n.split("/")[0] in {"agent", "boto3", "botocore", "httpx", "uvicorn"}]
    assert not [n for n in names if n.endswith(("/RECORD", "/INSTALLER"))]


def _run_driver(python: Path, task_root: Path, dynamodb_endpoint: str, scratch: Path) -> dict[str, Any]:
    driver = scratch / DRIVER.name  # run from outside the repository, so nothing of it is on sys.path
    shutil.copyfile(DRIVER, driver)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-west-1",
        "TUNNEL_DYNAMODB_ENDPOINT": dynamodb_endpoint,
    }
    result = subprocess.run(
        [str(python), "-I", str(driver), str(task_root), str(FIXTURES)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=scratch,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_zip_answers_real_events_with_only_boto3(
    boto3_only_python: Path, task_root: Path, dynamodb_endpoint: str, tmp_path: Path
) -> None:
    """Connect, ready, a public request the agent answers, a bad frame, bad events, cleanup, disconnect."""
    report = _run_driver(boto3_only_python, task_root, dynamodb_endpoint, tmp_path)
    assert report["forbidden_importable"] == []
    assert report["loaded_forbidden"] == []
    assert report["lambda_app_file"].startswith(str(task_root))
    results = report["results"]
    assert results["connect"] == {"statusCode": 200}
    assert results["ready"] == {"statusCode": 200}
    assert report["established"]["type"] == "connection_established"
    tunnel_id = report["established"]["tunnel_id"]
    # The agent's page came back rewritten under the tunnel's prefix: selectolax and regex work.
    assert results["public"]["statusCode"] == 200
    assert f'href="/{tunnel_id}/docs"' in results["public"]["body"]
    assert {"type": "http_request", "uri": "/search?" + _query(), "code": None} in report["agent_saw"]
    # A frame that is not the tunnel protocol is answered (200, and an error frame), never raised.
    assert results["bad_frame"] == {"statusCode": 200}
    assert [frame["type"] for frame in report["agent_saw"]].count("error") == 1
    assert results["http_v1_put.json"]["statusCode"] == 404
    assert results["bad_http_v2_no_method.json"]["statusCode"] == 400
    assert results["bad_websocket_no_connection_id.json"]["statusCode"] == 400
    assert results["unknown_s3_notification.json"]["statusCode"] == 400
    assert "removed" in results["scheduled_cleanup.json"]["keys"]
    assert results["disconnect"] == {"statusCode": 200}
    # Measured in the packaged tree: reported, not judged (benchmarks/cold_import.py measures it too).
    imports = report["import_ms"]
    print(f"cold import in the zip: boto3 {imports['boto3']:.0f} ms, handler {imports['handler']:.0f} ms")


def _query() -> str:
    event = json.loads((FIXTURES / "http_v2_get.json").read_text(encoding="utf-8"))
    return str(event["rawQueryString"])
