"""`tunnel package`: build the AWS Lambda deployment zip of the gateway (I/O: runs pip, writes the zip).

The zip holds `lambda_app`, `rewrite` and `transport` (without the development-only modules that need
uvicorn or websockets), the binary wheels of their dependencies for the target architecture and Python
(fetched by pip with ``--platform``/``--python-version``/``--only-binary``), and, when an interpreter of
the target version is at hand, their bytecode. boto3 is left out (the Lambda runtime has it), and so are
the agent, its command-line dependencies and the test tools. Choosing files and writing the zip are
plain functions; only `build_package` runs pip and another interpreter.

The same inputs give the same bytes: entries are sorted, every timestamp is 1980-01-01, permissions are
fixed (0644 files, 0755 directories), pip's install records (which vary) are dropped, dependency
versions are pinned to those installed next to this command, and bytecode is compiled with hashes in
place of timestamps (PEP 552), with fixed file names and hash seed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Literal, get_args

__all__ = [
    "CLI_ONLY_REQUIREMENTS",
    "EXCLUDED_MODULES",
    "HANDLER",
    "PROJECT_PACKAGES",
    "PYTHON_VERSIONS",
    "RUNTIME_PROVIDED",
    "Architecture",
    "PackageError",
    "PackageOptions",
    "PackageReport",
    "add_package_arguments",
    "build_package",
    "bytecode_names",
    "find_interpreter",
    "lambda_requirements",
    "package_command",
    "pinned_constraints",
    "pip_install_command",
    "platform_tags",
    "project_files",
    "select_files",
    "write_zip",
]

Architecture = Literal["arm64", "x86_64"]
_ARCHITECTURES: Final[tuple[str, ...]] = get_args(Architecture)
#: Lambda's Python runtimes this project runs on (requires-python >= 3.11).
PYTHON_VERSIONS: Final = ("3.11", "3.12", "3.13", "3.14")
#: The function's handler setting.
HANDLER: Final = "lambda_app.handler.handler"
#: The project's packages the handler imports.
PROJECT_PACKAGES: Final = ("lambda_app", "rewrite", "transport")
#: Modules of those packages that the handler never imports and whose dependencies stay out of the zip:
#: `tunnel emulate` (uvicorn, websockets, moto) and the websockets transport of the self-hosted gateway.
EXCLUDED_MODULES: Final = frozenset(
    {"lambda_app/emulate.py", "lambda_app/emulate_cli.py", "transport/local.py"}
)
#: The project's requirements that only the agent, the self-hosted gateway and the command line use
#: (tests/agent/test_package.py checks this list against what the handler imports).
CLI_ONLY_REQUIREMENTS: Final = frozenset(
    {"aiohttp", "httptools", "httpx", "sniffio", "uvicorn", "uvloop", "websockets"}
)
#: Distributions every Lambda Python runtime already provides
#: (https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html): never packaged.
RUNTIME_PROVIDED: Final = frozenset(
    {"boto3", "botocore", "jmespath", "python-dateutil", "s3transfer", "six", "urllib3"}
)

_DIST_NAME: Final = "http-tunnel-py"
# Zip entries carry DOS timestamps, which start in 1980.
_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
_FILE_MODE: Final = 0o100644
_DIR_MODE: Final = 0o040755
_UNIX: Final = 3  # "made by" system: Unix, so that external_attr carries the permissions
# What pip leaves that the runtime never reads: launchers, install records that differ between installs,
# and the C and Cython sources of compiled extensions.
_SKIPPED_TOP_LEVEL: Final = frozenset({"bin"})
_SKIPPED_DIST_INFO: Final = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
_SKIPPED_SUFFIXES: Final = frozenset({".pyc", ".pyo", ".c", ".pyx", ".pxd"})
# Lambda's limits for a .zip deployment package, 50 MB zipped when uploaded directly and 250 MB unzipped
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html); SAM uploads through S3.
_DIRECT_UPLOAD_LIMIT: Final = 50 * 1024 * 1024
_UNZIPPED_LIMIT: Final = 250 * 1024 * 1024
_NAME: Final = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# Compiles the sources named on stdin with the interpreter of the target version (PEP 552 hash-based pycs:
# no timestamps, no source check at import, since a deployed zip never changes).
_COMPILE_SCRIPT: Final = """
import json, py_compile, sys
for source, cfile, dfile in json.load(sys.stdin):
    try:
        py_compile.compile(source, cfile=cfile, dfile=dfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError:
        pass  # a file the runtime cannot compile either: it keeps compiling (and failing) from source
"""


class PackageError(Exception):
    """The package could not be built (pip failed, a path clashes, an interpreter is unusable)."""


@dataclass(frozen=True, slots=True)
class PackageOptions:
    """What `tunnel package` was asked to build.

    Attributes:
        output: Where to write the zip.
        arch: The function's architecture.
        python: The runtime's Python version, such as ``"3.12"``.
        interpreter: A Python of that version to compile bytecode with; None looks for one.
        bytecode: Whether to include bytecode (when an interpreter of the target version is found).
    """

    output: Path
    arch: Architecture = "arm64"
    python: str = "3.12"
    interpreter: str | None = None
    bytecode: bool = True

    def __post_init__(self) -> None:
        if self.arch not in _ARCHITECTURES:
            raise ValueError(f"arch must be one of {list(_ARCHITECTURES)}, got {self.arch!r}")
        if self.python not in PYTHON_VERSIONS:
            raise ValueError(f"python must be one of {list(PYTHON_VERSIONS)}, got {self.python!r}")


@dataclass(frozen=True, slots=True)
class PackageReport:
    """What `build_package` wrote.

    Attributes:
        output: The zip.
        size: Its size in bytes.
        files: How many files it holds.
        unpacked_size: The bytes of those files once unpacked.
        arch: The architecture the wheels were chosen for.
        python: The Python version they were chosen for.
        bytecode_tag: The cache tag of the included bytecode (``"cpython-312"``), or None without bytecode.
        requirements: The requirements pip installed, as given to it.
    """

    output: Path
    size: int
    files: int
    unpacked_size: int
    arch: Architecture
    python: str
    bytecode_tag: str | None
    requirements: tuple[str, ...]


def _canonical(name: str) -> str:
    # PEP 503 name normalisation.
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise PackageError(f"cannot read the requirement {requirement!r}")
    return _canonical(match[1])


def lambda_requirements(requires: Iterable[str]) -> tuple[str, ...]:
    """The project's requirements that the Lambda handler needs, as pip takes them.

    Args:
        requires: The project's ``Requires-Dist`` entries (``importlib.metadata.requires``).

    Returns:
        The unconditional requirements without the command line's and the runtime's own, in their order.
    """
    kept = []
    for requirement in requires:
        requirement = requirement.strip()
        _, _, marker = requirement.partition(";")
        if not requirement or re.search(r"\bextra\s*==", marker):
            continue  # optional extras: aws (boto3, in the runtime) and dev (tests and linters)
        name = _requirement_name(requirement)
        if name in CLI_ONLY_REQUIREMENTS or name in RUNTIME_PROVIDED:
            continue
        kept.append(requirement)
    return tuple(kept)


def pinned_constraints(installed: Mapping[str, str]) -> list[str]:
    """Pin every distribution installed here to its version, so the zip holds what was tested.

    Args:
        installed: Distribution names and versions (`importlib.metadata.distributions`).

    Returns:
        ``name==version`` lines for pip's ``--constraint``, sorted, without this project and the
        distributions the runtime provides.
    """
    pins = {
        _canonical(name): version
        for name, version in installed.items()
        if _canonical(name) not in RUNTIME_PROVIDED and _canonical(name) != _DIST_NAME
    }
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def platform_tags(arch: Architecture, python: str) -> list[str]:
    """The wheel platform tags Lambda's runtime for `python` on `arch` can load.

    Python 3.11 runs on Amazon Linux 2 (glibc 2.26), 3.12 and later on Amazon Linux 2023 (glibc 2.34)
    (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).

    Args:
        arch: The function's architecture.
        python: The runtime's Python version.

    Returns:
        ``manylinux`` tags, newest first.
    """
    machine = "aarch64" if arch == "arm64" else "x86_64"
    glibc = ["2_34", "2_28", "2_17"] if python != "3.11" else ["2_17"]
    return [f"manylinux_{version}_{machine}" for version in glibc] + [f"manylinux2014_{machine}"]


def pip_install_command(
    python_executable: str,
    target: Path,
    requirements: Sequence[str],
    constraints: Path,
    arch: Architecture,
    python: str,
) -> list[str]:
    """The pip command that installs binary wheels for the Lambda platform into `target`.

    Args:
        python_executable: The interpreter whose pip runs (this one).
        target: The directory to install into.
        requirements: What to install.
        constraints: A file of ``name==version`` pins.
        arch: The function's architecture.
        python: The runtime's Python version.

    Returns:
        The command's arguments.
    """
    command = [python_executable, "-m", "pip", "install", "--target", str(target)]
    for tag in platform_tags(arch, python):
        command += ["--platform", tag]
    command += [
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--only-binary=:all:",
        "--no-compile",
        "--no-input",
        "--disable-pip-version-check",
        "--quiet",
        "--constraint",
        str(constraints),
        *requirements,
    ]
    return command


def _skipped(relative: PurePosixPath) -> bool:
    if relative.parts[0] in _SKIPPED_TOP_LEVEL or "__pycache__" in relative.parts:
        return True
    if relative.suffix in _SKIPPED_SUFFIXES:
        return True
    return (
        len(relative.parts) == 2
        and relative.parts[0].endswith(".dist-info")
        and (relative.name in _SKIPPED_DIST_INFO)
    )


def select_files(root: Path) -> dict[str, Path]:
    """The files of a pip ``--target`` directory that belong in the zip.

    Left out: ``bin/`` launchers, ``__pycache__`` and compiled bytecode, C and Cython sources of
    extensions, and the install records in ``*.dist-info`` (``RECORD``, ``INSTALLER``, ``REQUESTED``,
    ``direct_url.json``); metadata and licences stay.

    Args:
        root: The directory pip installed into.

    Returns:
        Archive names (POSIX paths relative to `root`) and the files they come from, sorted by name.
    """
    selected: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if path.is_file() and not path.is_symlink() and not _skipped(relative):
            selected[str(relative)] = path
    return dict(sorted(selected.items()))


def project_files(packages: Sequence[str] = PROJECT_PACKAGES) -> dict[str, Path]:
    """The project's files the handler needs, from wherever the packages are installed.

    Args:
        packages: The project's packages to include.

    Returns:
        Archive names (``lambda_app/handler.py``, ``rewrite/resources/...``) and their files, without
        `EXCLUDED_MODULES` and bytecode.

    Raises:
        PackageError: A package cannot be found.
    """
    selected: dict[str, Path] = {}
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise PackageError(f"the package {package!r} is not importable here")
        directory = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(directory.rglob("*")):
            relative = PurePosixPath(package, path.relative_to(directory).as_posix())
            if not path.is_file() or _skipped(relative) or str(relative) in EXCLUDED_MODULES:
                continue
            selected[str(relative)] = path
    return dict(sorted(selected.items()))


def bytecode_names(sources: Iterable[str], cache_tag: str) -> dict[str, str]:
    """Where the import system looks for each source's bytecode (``pkg/__pycache__/mod.<tag>.pyc``).

    Args:
        sources: Archive names; those ending in ``.py`` get bytecode.
        cache_tag: The target interpreter's ``sys.implementation.cache_tag``.

    Returns:
        Source archive name to bytecode archive name.
    """
    names = {}
    for source in sources:
        path = PurePosixPath(source)
        if path.suffix == ".py":
            names[source] = str(path.parent / "__pycache__" / f"{path.stem}.{cache_tag}.pyc")
    return names


def write_zip(files: Mapping[str, Path], output: Path) -> int:
    """Write `files` into a zip whose bytes depend only on their names and contents.

    Entries (and an entry for every directory) are sorted by name, dated 1980-01-01 00:00, made by Unix
    with mode 0644 (files) or 0755 (directories), and deflated at level 6. The zip is written next to
    `output` and moved into place.

    Args:
        files: Archive names (POSIX, relative) and the files they come from.
        output: The zip to write.

    Returns:
        The zip's size in bytes.

    Raises:
        PackageError: An archive name is absolute or climbs out of the archive.
    """
    directories: set[str] = set()
    for name in files:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or name.endswith("/") or not name:
            raise PackageError(f"unsafe name for a zip entry: {name!r}")
        directories.update(f"{parent}/" for parent in path.parents if str(parent) != ".")
    entries = sorted([*files, *directories])
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = _UNIX
            if name in directories:
                info.external_attr = (_DIR_MODE << 16) | 0x10  # 0x10: the MS-DOS directory flag
                archive.writestr(info, b"")
            else:
                info.external_attr = _FILE_MODE << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                # Level 6 (zlib's default): level 9 takes five times as long for 1% less.
                archive.writestr(info, files[name].read_bytes(), compresslevel=6)
    partial.replace(output)
    return output.stat().st_size


def _python_version(interpreter: str) -> str | None:
    try:
        result = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def find_interpreter(python: str, explicit: str | None = None) -> str | None:
    """A Python interpreter of version `python` to compile bytecode with.

    Args:
        python: The version wanted, such as ``"3.12"``.
        explicit: An interpreter the user named; it must be of that version.

    Returns:
        This interpreter if it has that version, else ``python3.X`` on PATH if it runs and has it, else
        None.

    Raises:
        PackageError: `explicit` is not a Python of that version.
    """
    if explicit is not None:
        found = _python_version(explicit)
        if found != python:
            raise PackageError(f"{explicit} is Python {found or '(did not run)'}, not {python}")
        return explicit
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return sys.executable
    candidate = shutil.which(f"python{python}")
    if candidate is not None and _python_version(candidate) == python:
        return candidate
    return None


def _compile(sources: Mapping[str, Path], interpreter: str, into: Path) -> tuple[str, dict[str, Path]]:
    """Compile every ``.py`` of `sources` with `interpreter`; the cache tag and the bytecode's files."""
    tag_result = subprocess.run(
        [interpreter, "-c", "import sys; print(sys.implementation.cache_tag)"],
        capture_output=True,
        text=True,
        check=True,
    )
    tag = tag_result.stdout.strip()
    names = bytecode_names(sources, tag)
    jobs = [(str(sources[source]), str(into / name), source) for source, name in names.items()]
    # A fixed hash seed keeps the order of set constants, and so the bytes, the same from run to run.
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run(
        [interpreter, "-c", _COMPILE_SCRIPT],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if result.returncode != 0:
        raise PackageError(f"compiling bytecode with {interpreter} failed:\n{result.stderr.strip()}")
    compiled = {name: into / name for name in names.values() if (into / name).is_file()}
    return tag, compiled


def _installed_versions() -> dict[str, str]:
    versions = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            versions[name] = distribution.version
    return versions


def build_package(
    options: PackageOptions,
    *,
    progress: Callable[[str], None] = lambda line: None,
) -> PackageReport:
    """Build the Lambda deployment zip.

    Args:
        options: Output path, architecture, Python version and bytecode choice.
        progress: Receives one line per step.

    Returns:
        What was written.

    Raises:
        PackageError: The project is not installed, pip failed (offline, no wheel for the platform), or
            bytecode could not be compiled.
    """
    try:
        requires = importlib.metadata.requires(_DIST_NAME) or []
    except importlib.metadata.PackageNotFoundError:
        raise PackageError(f"{_DIST_NAME} is not installed: run pip install -e . first") from None
    requirements = lambda_requirements(requires)
    interpreter = find_interpreter(options.python, options.interpreter) if options.bytecode else None
    with tempfile.TemporaryDirectory(prefix="tunnel-package-") as scratch:
        work = Path(scratch)
        constraints = work / "constraints.txt"
        constraints.write_text("\n".join(pinned_constraints(_installed_versions())) + "\n", encoding="utf-8")
        site = work / "site"
        progress(f"fetching wheels for {options.arch}, Python {options.python}: {', '.join(requirements)}")
        command = pip_install_command(
            sys.executable, site, requirements, constraints, options.arch, options.python
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PackageError(
                f"pip could not install the wheels:\n{(result.stderr or result.stdout).strip()}"
            )
        files = select_files(site)
        stray = sorted(
            {
                name.split("/")[0]
                for name in files
                if name.split("/")[0].endswith(".dist-info")
                and _canonical(name.split("/")[0].rsplit("-", 1)[0]) in RUNTIME_PROVIDED
            }
        )
        if stray:
            raise PackageError(f"a dependency pulled in what the runtime provides: {', '.join(stray)}")
        ours = project_files()
        clashes = sorted(set(files) & set(ours))
        if clashes:
            raise PackageError(f"a dependency installs files of this project: {', '.join(clashes[:5])}")
        files.update(ours)
        tag = None
        if interpreter is not None:
            progress(f"compiling bytecode with {interpreter}")
            tag, bytecode = _compile(files, interpreter, work / "bytecode")
            files.update(bytecode)
        elif options.bytecode:
            # Bytecode is specific to a Python version, and /var/task is read-only: without it in the zip,
            # every cold start compiles the sources again (about 140 ms more, benchmarks/cold_import.py).
            progress(
                f"no Python {options.python} found (pass --interpreter): the zip holds sources only, which "
                "every cold start compiles"
            )
        progress(f"writing {options.output}")
        size = write_zip(files, options.output)
        unpacked_size = sum(path.stat().st_size for path in files.values())
    return PackageReport(
        output=options.output,
        size=size,
        files=len(files),
        unpacked_size=unpacked_size,
        arch=options.arch,
        python=options.python,
        bytecode_tag=tag,
        requirements=requirements,
    )


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def add_package_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `tunnel package`'s options to `parser`."""
    parser.add_argument(
        "--output", type=Path, default=Path("fn.zip"), help="the zip to write (default fn.zip)"
    )
    parser.add_argument(
        "--arch",
        choices=_ARCHITECTURES,
        default="arm64",
        help="the function's architecture (default arm64, the template's default)",
    )
    parser.add_argument(
        "--python",
        choices=PYTHON_VERSIONS,
        default="3.12",
        help="the Lambda runtime's Python version (default 3.12, the template's default)",
    )
    parser.add_argument(
        "--interpreter",
        metavar="PATH",
        help="a Python of that version to compile bytecode with (default: this one or pythonX.Y on PATH)",
    )
    parser.add_argument(
        "--no-bytecode",
        dest="bytecode",
        action="store_false",
        help="leave bytecode out (every cold start then compiles the sources)",
    )


def package_command(args: argparse.Namespace) -> int:
    """Run `tunnel package` from parsed arguments: build the zip and print its size.

    Returns:
        0 when the zip was written, 1 when it could not be built.
    """
    try:
        options = PackageOptions(
            output=args.output,
            arch=args.arch,
            python=args.python,
            interpreter=args.interpreter,
            bytecode=args.bytecode,
        )
        report = build_package(options, progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    except (PackageError, ValueError, OSError) as exc:
        print(f"tunnel package: {exc}", file=sys.stderr)
        return 1
    bytecode = f"bytecode for {report.bytecode_tag}" if report.bytecode_tag else "no bytecode"
    print(
        f"{report.output}: {_megabytes(report.size)} ({report.size} bytes), {report.files} files, "
        f"{_megabytes(report.unpacked_size)} unpacked; {report.arch}, Python {report.python}, {bytecode}"
    )
    print(
        f"Deploy it with Architecture={report.arch} and Runtime=python{report.python}; "
        f"the handler is {HANDLER}."
    )
    if report.size > _DIRECT_UPLOAD_LIMIT:
        print("Note: over 50 MB zipped, it must be uploaded through S3 (sam deploy does).")
    if report.unpacked_size > _UNZIPPED_LIMIT:
        print("Warning: over Lambda's 250 MB unzipped limit: the function cannot be created.")
    return 0
