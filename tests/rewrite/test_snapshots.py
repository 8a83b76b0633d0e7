"""Snapshots of the captured fixtures rewritten in path mode: one readable file per case, so a diff reads like
a diff of the page.

Regenerate after an intended change with
`.venv/bin/pytest tests/rewrite/test_snapshots.py --snapshot-update` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from rewrite import RewriteConfig, context_script, rewrite_response

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CONFIG = RewriteConfig(
    prefix="/t3st1d", public_origin="https://gw.example.com", upstream_origin="http://127.0.0.1:3000"
)


class _TextSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT


class HTMLSnapshot(_TextSnapshot):
    """One `.html` file per snapshot."""

    file_extension = "html"


class CSSSnapshot(_TextSnapshot):
    """One `.css` file per snapshot."""

    file_extension = "css"


class JSSnapshot(_TextSnapshot):
    """One `.js` file per snapshot."""

    file_extension = "js"


class JSONSnapshot(_TextSnapshot):
    """One `.json` file per snapshot."""

    file_extension = "json"


_KINDS: dict[str, tuple[str, type[SingleFileSnapshotExtension]]] = {
    ".html": ("text/html; charset=utf-8", HTMLSnapshot),
    ".css": ("text/css; charset=utf-8", CSSSnapshot),
    ".js": ("text/javascript; charset=utf-8", JSSnapshot),
    ".json": ("application/json", JSONSnapshot),
}

CASES = sorted(
    [
        *FIXTURES.glob("pages/*.html"),
        FIXTURES / "spa" / "index.html",
        FIXTURES / "spa" / "styles.css",
        FIXTURES / "spa" / "app.js",
        FIXTURES / "json" / "openapi.json",
    ]
)


def _rewrite(path: Path, body: bytes) -> bytes:
    content_type = _KINDS[path.suffix][0]
    result = rewrite_response([("content-type", content_type)], body, CONFIG)
    assert not result.report.skipped, result.report.skipped
    return result.body


@pytest.mark.parametrize("path", CASES, ids=lambda path: str(path.relative_to(FIXTURES)).replace("/", "-"))
def test_fixture_rewritten(path: Path, snapshot: SnapshotAssertion) -> None:
    """A fixture rewritten in path mode matches its snapshot, and rewriting it again changes nothing."""
    rewritten = _rewrite(path, path.read_bytes())
    assert rewritten.decode("utf-8").replace(context_script(CONFIG), _SCRIPT_STANDIN) == snapshot(
        extension_class=_KINDS[path.suffix][1]
    )
    assert _rewrite(path, rewritten) == rewritten


# The context script is tested on its own (test_inject.py, the browser tests); in a snapshot it would be
# 7 KB repeated in every page, and every change to it would rewrite every snapshot.
_SCRIPT_STANDIN = "/* the tunnel context script: rewrite/resources/context.js */"


def test_every_fixture_page_has_a_case() -> None:
    """Each captured page in fixtures/pages/ is snapshotted, so a new capture cannot go unreviewed."""
    assert set(FIXTURES.glob("pages/*.html")) <= set(CASES)
    assert len(CASES) >= 6
