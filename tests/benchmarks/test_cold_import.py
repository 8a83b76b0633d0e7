"""The cold-import benchmark measures the tree the Lambda zip holds and reports against its target."""

from __future__ import annotations

from pathlib import Path

from benchmarks.cold_import import TARGET_MS, ColdImport, cold_import_table, packaged_tree


def test_packaged_tree_holds_the_handler_and_its_libraries_only(tmp_path: Path) -> None:
    """The tree has the gateway's packages and the libraries its import loads, no agent, CLI or bytecode."""
    copied = packaged_tree(tmp_path)
    assert (tmp_path / "lambda_app" / "handler.py").is_file()
    assert {"regex", "selectolax", "jwt", "cryptography", "zstandard", "tinycss2"} <= set(copied)
    assert not {"agent", "uvicorn", "websockets", "httpx", "boto3", "botocore"} & set(copied)
    assert not (tmp_path / "agent").exists()
    assert not list(tmp_path.rglob("*.pyc"))


def test_table_judges_against_the_target() -> None:
    """A handler import under the target is met, one over it is not."""
    text = cold_import_table(
        [ColdImport("fast", 120.0, TARGET_MS - 1, 7), ColdImport("slow", 120.0, TARGET_MS + 1, 7)]
    )
    rows = text.splitlines()[2:]
    assert rows[0].startswith("| fast |")
    assert rows[0].endswith("| yes |")
    assert rows[1].startswith("| slow |")
    assert rows[1].endswith("| **no** |")
