"""Tests for agent/package.py without the network: requirements, pip's command, files, the zip's bytes."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agent.package import (
    EXCLUDED_MODULES,
    RUNTIME_PROVIDED,
    PackageError,
    PackageOptions,
    bytecode_names,
    find_interpreter,
    lambda_requirements,
    pinned_constraints,
    pip_install_command,
    platform_tags,
    project_files,
    select_files,
    write_zip,
)

REQUIRES = [
    "selectolax>=1.0",
    "tinycss2>=1.4",
    "httpx>=0.28",
    "websockets>=14",
    "uvicorn>=0.30",
    "pyjwt[crypto]>=2.10",
    "cryptography>=42",
    'boto3>=1.35; extra == "aws"',
    'pytest>=8; extra == "dev"',
    'tomli>=2; python_version < "3.11"',
]


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_requirements_keep_the_runtime_ones_in_order() -> None:
    """The handler's requirements stay; extras, CLI-only and runtime-provided ones go; markers are kept."""
    assert lambda_requirements(REQUIRES) == (
        "selectolax>=1.0",
        "tinycss2>=1.4",
        "pyjwt[crypto]>=2.10",
        "cryptography>=42",
        'tomli>=2; python_version < "3.11"',
    )


def test_requirements_never_include_boto3_even_unconditionally() -> None:
    """A plain boto3 or botocore requirement is still left to the runtime."""
    assert lambda_requirements(["boto3>=1.35", "Botocore", "regex"]) == ("regex",)


def test_project_requirements_are_the_handler_dependencies() -> None:
    """From this project's own metadata: the binary wheels of the issue, and nothing the CLI alone needs."""
    names = {
        r.split(">")[0].split("[")[0]
        for r in lambda_requirements(importlib.metadata.requires("http-tunnel-py") or [])
    }
    assert {"selectolax", "regex", "brotli", "zstandard", "pyjwt", "cryptography", "tinycss2"} <= names
    assert not names & {"httpx", "websockets", "uvicorn", "boto3", "pytest", "fastapi"}


def _closure(names: set[str]) -> set[str]:
    """The names and, transitively, the unconditional requirements of the installed distributions."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:  # a requirement whose marker excludes this Python
            continue
        for requirement in requires:
            if "extra ==" not in requirement.replace("extra==", "extra =="):
                todo.append(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
    return seen


def test_requirements_are_exactly_what_the_handler_imports() -> None:
    """What importing the handler loads comes from the packaged requirements (or the runtime), and each
    packaged requirement is loaded: a new dependency cannot be missed, nor a CLI-only one slip in."""
    script = (
        "import sys; before = set(sys.modules); import lambda_app.handler; "
        "print(*sorted({name.split('.')[0] for name in set(sys.modules) - before}))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    owners = importlib.metadata.packages_distributions()
    imported = {
        owner.lower().replace("_", "-")
        for module in result.stdout.split()
        for owner in owners.get(module, [])
    } - {"http-tunnel-py"}
    packaged = {
        re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower()
        for r in lambda_requirements(importlib.metadata.requires("http-tunnel-py") or [])
    }
    assert imported - RUNTIME_PROVIDED <= _closure(packaged)
    assert packaged <= imported, packaged - imported


def test_constraints_pin_installed_versions_except_the_runtime_and_the_project() -> None:
    """Every installed distribution is pinned by its normalised name; boto3 and this project are not."""
    pins = pinned_constraints(
        {"Regex": "2026.1.1", "zope.interface": "6.0", "boto3": "1.35.0", "http_tunnel_py": "0.1.0"}
    )
    assert pins == ["regex==2026.1.1", "zope-interface==6.0"]


@pytest.mark.parametrize(
    ("arch", "python", "expected"),
    [
        ("arm64", "3.12", ["manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64"]),
        ("x86_64", "3.13", ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64"]),
        ("x86_64", "3.11", ["manylinux_2_17_x86_64"]),
    ],
)
def test_platform_tags_follow_the_runtime_glibc(arch: str, python: str, expected: list[str]) -> None:
    """Python 3.11 (Amazon Linux 2) gets glibc 2.17 wheels at most; 3.12+ (Amazon Linux 2023) up to 2.34."""
    machine = "aarch64" if arch == "arm64" else "x86_64"
    assert platform_tags(arch, python) == [*expected, f"manylinux2014_{machine}"]  # type: ignore[arg-type]


def test_pip_command_asks_for_binary_wheels_of_the_target() -> None:
    """pip installs into the target for the runtime's platform and version, binary only, without bytecode."""
    command = pip_install_command("/py", Path("/t"), ["regex>=2024.11"], Path("/c.txt"), "arm64", "3.12")
    assert command[:6] == ["/py", "-m", "pip", "install", "--target", "/t"]
    assert command[command.index("--python-version") :][:2] == ["--python-version", "3.12"]
    assert command[command.index("--implementation") :][:2] == ["--implementation", "cp"]
    assert "--only-binary=:all:" in command
    assert "--no-compile" in command
    assert command[command.index("--constraint") :][:2] == ["--constraint", "/c.txt"]
    assert command[-1] == "regex>=2024.11"
    platforms = [command[i + 1] for i, part in enumerate(command) if part == "--platform"]
    assert platforms == platform_tags("arm64", "3.12")


def test_select_files_drops_launchers_bytecode_sources_and_install_records(tmp_path: Path) -> None:
    """bin/, __pycache__, .pyc, C/Cython sources and install records go; code, metadata and licences stay."""
    root = _tree(
        tmp_path,
        {
            "bin/normalizer": b"#!/bin/sh",
            "regex/__init__.py": b"",
            "regex/__pycache__/__init__.cpython-312.pyc": b"x",
            "regex/_regex.cpython-312-aarch64-linux-gnu.so": b"\x7fELF",
            "selectolax/lexbor.c": b"/* c */",
            "selectolax/lexbor.pyx": b"#",
            "selectolax/lexbor.pxd": b"#",
            "stale.pyc": b"x",
            "regex-1.0.dist-info/METADATA": b"Name: regex",
            "regex-1.0.dist-info/RECORD": b"regex/__init__.py,,",
            "regex-1.0.dist-info/INSTALLER": b"pip",
            "regex-1.0.dist-info/REQUESTED": b"",
            "regex-1.0.dist-info/direct_url.json": b"{}",
            "regex-1.0.dist-info/licenses/LICENSE.txt": b"Apache",
            "regex/RECORD": b"a module file that happens to have this name",
        },
    )
    assert list(select_files(root)) == [
        "regex-1.0.dist-info/METADATA",
        "regex-1.0.dist-info/licenses/LICENSE.txt",
        "regex/RECORD",
        "regex/__init__.py",
        "regex/_regex.cpython-312-aarch64-linux-gnu.so",
    ]


def test_project_files_hold_the_gateway_and_never_the_agent() -> None:
    """The zip's own code is lambda_app, rewrite and transport with resources, minus dev-only modules."""
    files = project_files()
    assert "lambda_app/handler.py" in files
    assert "rewrite/resources/context.js" in files
    assert "transport/apigateway.py" in files
    assert not EXCLUDED_MODULES & set(files)
    assert not [name for name in files if name.startswith("agent/") or "__pycache__" in name]
    assert all(path.is_file() for path in files.values())


def test_project_files_refuse_a_missing_package() -> None:
    """A package that cannot be imported is a PackageError naming it."""
    with pytest.raises(PackageError, match="no_such_package_here"):
        project_files(["no_such_package_here"])


def test_bytecode_lives_where_the_import_system_looks() -> None:
    """Each .py gets __pycache__/<module>.<cache tag>.pyc next to it; other files get none."""
    names = bytecode_names(["brotli.py", "jwt/api_jwt.py", "jwt/py.typed"], "cpython-312")
    assert names == {
        "brotli.py": "__pycache__/brotli.cpython-312.pyc",
        "jwt/api_jwt.py": "jwt/__pycache__/api_jwt.cpython-312.pyc",
    }


def test_zip_entries_are_sorted_dated_1980_with_fixed_modes(tmp_path: Path) -> None:
    """Files and their directories come sorted, dated 1980-01-01, 0644 and 0755, made by Unix, deflated."""
    source = _tree(tmp_path / "in", {"b.py": b"b", "a/z.py": b"z" * 1000, "a/b/c.txt": b"c"})
    output = tmp_path / "out" / "fn.zip"
    size = write_zip(
        {"b.py": source / "b.py", "a/z.py": source / "a/z.py", "a/b/c.txt": source / "a/b/c.txt"}, output
    )
    assert size == output.stat().st_size
    with zipfile.ZipFile(output) as archive:
        infos = archive.infolist()
        assert [info.filename for info in infos] == ["a/", "a/b/", "a/b/c.txt", "a/z.py", "b.py"]
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.create_system == 3
            mode = info.external_attr >> 16
            if info.is_dir():
                assert (stat.S_ISDIR(mode), stat.S_IMODE(mode)) == (True, 0o755)
            else:
                assert (stat.S_ISREG(mode), stat.S_IMODE(mode)) == (True, 0o644)
                assert info.compress_type == zipfile.ZIP_DEFLATED
        assert archive.read("a/z.py") == b"z" * 1000
    assert not list((tmp_path / "out").glob("*.partial"))


def test_zip_bytes_depend_only_on_names_and_contents(tmp_path: Path) -> None:
    """The same files given in another order, with other timestamps and modes, make the same zip bytes."""
    first = _tree(tmp_path / "one", {"x/a.py": b"print(1)\n", "b.txt": b"bee"})
    second = _tree(tmp_path / "two", {"b.txt": b"bee", "x/a.py": b"print(1)\n"})
    (second / "x/a.py").chmod(0o700)
    os.utime(second / "b.txt", (1_900_000_000, 1_900_000_000))
    write_zip({"x/a.py": first / "x/a.py", "b.txt": first / "b.txt"}, tmp_path / "1.zip")
    write_zip({"b.txt": second / "b.txt", "x/a.py": second / "x/a.py"}, tmp_path / "2.zip")
    digest = [hashlib.sha256((tmp_path / f"{n}.zip").read_bytes()).hexdigest() for n in (1, 2)]
    assert digest[0] == digest[1]
    (second / "b.txt").write_bytes(b"bee!")
    write_zip({"b.txt": second / "b.txt", "x/a.py": second / "x/a.py"}, tmp_path / "3.zip")
    assert hashlib.sha256((tmp_path / "3.zip").read_bytes()).hexdigest() != digest[0]


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.py", "a/../../b", "dir/", ""])
def test_zip_refuses_names_that_leave_the_archive(tmp_path: Path, name: str) -> None:
    """Absolute, climbing, directory-shaped and empty names are refused before anything is written."""
    source = _tree(tmp_path, {"f": b"f"})
    with pytest.raises(PackageError, match="unsafe name"):
        write_zip({name: source / "f"}, tmp_path / "fn.zip")
    assert not (tmp_path / "fn.zip").exists()


def test_this_interpreter_compiles_for_its_own_version() -> None:
    """find_interpreter returns the running Python for its own version, and refuses a wrong explicit one."""
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert find_interpreter(own) == sys.executable
    other = "3.14" if own != "3.14" else "3.13"
    with pytest.raises(PackageError, match=f"not {other}"):
        find_interpreter(other, sys.executable)


@pytest.mark.parametrize(("field", "value"), [("arch", "mips"), ("python", "3.10")])
def test_options_refuse_an_unknown_target(field: str, value: str) -> None:
    """An architecture or Python version Lambda (or this project) does not offer is a ValueError."""
    with pytest.raises(ValueError, match=field):
        PackageOptions(output=Path("fn.zip"), **{field: value})  # type: ignore[arg-type]
