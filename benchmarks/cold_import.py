"""Cold import time of the Lambda handler beyond boto3's own, in fresh interpreters, as the Lambda package
lays it out. I/O: copies the handler's modules into a temporary directory and runs subprocesses.

The tree is what `tunnel package` ships, rebuilt from this environment without the network: the project's
packages (`agent.package.project_files`) and every third-party module the handler's import loads that
boto3's does not, copied from site-packages without their bytecode. Each run is a new interpreter that
imports boto3 (the runtime's own) and then ``lambda_app.handler`` from the tree, timing both; the best of
N runs counts. The tree is measured with the bytecode `tunnel package` adds (PEP 552, unchecked hashes)
and without it (``--no-bytecode``, or no interpreter of the target version at build time): the Lambda
task root is read-only, so without bytecode in the zip every cold start compiles the sources again.
"""

from __future__ import annotations

import json
import py_compile
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.util import cache_from_source
from pathlib import Path
from typing import Final

from agent.package import project_files

__all__ = ["TARGET_MS", "ColdImport", "cold_import_table", "measure", "packaged_tree"]

#: The issue's target: the handler's import costs less than this beyond boto3's.
TARGET_MS: Final = 150.0

# Lists (as JSON) the top-level names and files of the third-party modules the handler's import loads
# beyond boto3's: what the zip must provide besides the project's own packages.
_LIST_MODULES: Final = """
import json, sys, sysconfig
import boto3
before = set(sys.modules)
import lambda_app.handler
site = sysconfig.get_paths()["purelib"]
found = {}
for name in sorted(set(sys.modules) - before):
    top = sys.modules.get(name.split(".")[0])
    path = getattr(top, "__file__", None) or ""
    if path.startswith(site):
        package = getattr(top, "__path__", None)
        found[top.__name__] = list(package)[0] if package else path
print(json.dumps(found))
"""
# One measurement, in a fresh interpreter started with -I -B: the tree first on sys.path, as the Lambda
# runtime puts its task root, and nothing written back into it.
_TIME_IMPORTS: Final = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
started = time.perf_counter()
import boto3
boto3_done = time.perf_counter()
import lambda_app.handler
done = time.perf_counter()
assert lambda_app.handler.__file__.startswith(sys.argv[1]), lambda_app.handler.__file__
print(json.dumps({"boto3": (boto3_done - started) * 1000, "handler": (done - boto3_done) * 1000}))
"""


@dataclass(frozen=True, slots=True)
class ColdImport:
    """The best of N cold imports in one condition.

    Attributes:
        condition: What was measured (with or without bytecode).
        boto3_ms: The fastest ``import boto3``.
        handler_ms: The fastest ``import lambda_app.handler`` after it.
        runs: How many fresh interpreters were timed.
    """

    condition: str
    boto3_ms: float
    handler_ms: float
    runs: int


def packaged_tree(into: Path) -> list[str]:
    """Lay out the handler's code as the Lambda zip does, from this environment, without bytecode.

    Args:
        into: An empty directory.

    Returns:
        The third-party top-level modules copied besides the project's packages.
    """
    for name, source in project_files().items():
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    listed = subprocess.run([sys.executable, "-c", _LIST_MODULES], capture_output=True, text=True, check=True)
    modules: dict[str, str] = json.loads(listed.stdout)
    for path in modules.values():
        source = Path(path)
        if source.is_dir():
            shutil.copytree(source, into / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(source, into / source.name)
    return sorted(modules)


def _compile(tree: Path) -> None:
    for source in tree.rglob("*.py"):
        cfile = cache_from_source(str(source))
        try:
            py_compile.compile(
                str(source),
                cfile=cfile,
                dfile=str(source.relative_to(tree)),
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except py_compile.PyCompileError:
            continue


def _time_once(tree: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-I", "-B", "-c", _TIME_IMPORTS, str(tree)],
        capture_output=True,
        text=True,
        check=True,
    )
    times: dict[str, float] = json.loads(result.stdout)
    return times


def measure(repeat: int = 7) -> list[ColdImport]:
    """Time the cold import with and without bytecode, runs of the two alternating.

    Args:
        repeat: Fresh interpreters per condition; the fastest counts.

    Returns:
        One result per condition: with bytecode first.
    """
    with tempfile.TemporaryDirectory(prefix="cold-import-") as scratch:
        sources, compiled = Path(scratch) / "sources", Path(scratch) / "bytecode"
        sources.mkdir()
        packaged_tree(sources)
        shutil.copytree(sources, compiled)
        _compile(compiled)
        runs: dict[Path, list[dict[str, float]]] = {compiled: [], sources: []}
        for _ in range(repeat):
            for tree, times in runs.items():
                times.append(_time_once(tree))
    labels = {
        compiled: "with bytecode (what `tunnel package` ships)",
        sources: "sources only (`--no-bytecode`)",
    }
    return [
        ColdImport(
            condition=labels[tree],
            boto3_ms=min(t["boto3"] for t in times),
            handler_ms=min(t["handler"] for t in times),
            runs=len(times),
        )
        for tree, times in runs.items()
    ]


def cold_import_table(results: list[ColdImport]) -> str:
    """The results as a Markdown table against the target."""
    lines = [
        "| package | `import boto3` ms | `import lambda_app.handler` after it, ms | target | met? |",
        "|---|--:|--:|--:|:-:|",
    ]
    for r in results:
        met = "yes" if r.handler_ms < TARGET_MS else "**no**"
        lines.append(f"| {r.condition} | {r.boto3_ms:.0f} | {r.handler_ms:.0f} | < {TARGET_MS:.0f} | {met} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(cold_import_table(measure()))
