"""Rewriting speed next to bare parser passes over the same inputs, measured in one run. Reads the Swagger UI
assets from the installed package and times with `time.perf_counter`; writes nothing itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gzip
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

import tinycss2
from selectolax.lexbor import LexborHTMLParser

from benchmarks.pages import docs_page, inject_css_urls, inject_url_literals, swagger_ui_asset
from rewrite import (
    Report,
    RewriteConfig,
    RewriteResult,
    rewrite_css,
    rewrite_html,
    rewrite_js,
    rewrite_response,
)
from rewrite.fast_re import engine, standard_library_only

__all__ = ["CONFIG", "Case", "Measurement", "best_of", "cases", "machine", "measure", "table", "warm_up"]

CONFIG = RewriteConfig(
    prefix="/abc123", public_origin="https://gw.example.com", upstream_origin="http://127.0.0.1:3000"
)


@dataclass(frozen=True, slots=True)
class Case:
    """One input, our call on it, and optionally a reference call on the same input with a target ratio.

    `max_ratio` bounds ours ÷ reference: 1.5 means "at most 1.5 times the reference's time", 0.05 means
    "at least 20 times faster than the reference".
    """

    name: str
    size: int  # bytes of the input, decoded (a gzip body counts as the page it holds)
    ours: Callable[[], Report]  # what our call rewrote and skipped
    reference_name: str = ""
    reference: Callable[[], object] | None = None
    max_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class Measurement:
    """The best-of-N times of one case, what our call did, or why the case could not be measured."""

    case: Case
    ours: float  # seconds
    reference: float | None  # seconds
    rewritten: int  # URLs
    skipped: tuple[str, ...]  # why parts were left alone (a skipped page was not really rewritten)
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        """Ours ÷ reference."""
        return None if self.reference is None else self.ours / self.reference

    @property
    def met(self) -> bool | None:
        """Whether the target was met, or None when the case has none."""
        if self.ratio is None or self.case.max_ratio is None or (self.skipped and not self.rewritten):
            return None
        return self.ratio <= self.case.max_ratio

    @property
    def mb_per_s(self) -> float:
        """Input megabytes (10^6 bytes) per second through our call."""
        return self.case.size / 1e6 / self.ours


def best_of(call: Callable[[], object], repeat: int = 7, warmup: int = 1) -> float:
    """The shortest wall time of `repeat` calls of `call`, in seconds, after `warmup` untimed calls.

    The minimum is the least noisy estimate of what the code costs: everything that makes a run
    slower (other processes, the garbage collector, frequency scaling) only ever adds time.
    """
    return _best_of_pairs(call, None, repeat, warmup)[0]


def _best_of_pairs(
    ours: Callable[[], object], reference: Callable[[], object] | None, repeat: int, warmup: int
) -> tuple[float, float | None]:
    """Best times of `ours` and `reference`, called in turn in each round so both see the same machine.

    Both are warmed up before either is timed, so that neither pays alone for a cold start.
    """
    for _ in range(warmup):
        ours()
        if reference is not None:
            reference()
    best_ours = best_reference = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        ours()
        best_ours = min(best_ours, time.perf_counter() - start)
        if reference is not None:
            start = time.perf_counter()
            reference()
            best_reference = min(best_reference, time.perf_counter() - start)
    return best_ours, None if reference is None else best_reference


def warm_up(all_cases: list[Case]) -> None:
    """Settle the heap, then call every case once, ours and the reference, before anything is timed.

    A bare selectolax pass over the 1.2 MB page takes about 7 ms when the memory it freed last time is
    still there to reuse, and about twice that when glibc has handed it back to the kernel and the next
    parse page-faults it in again, which glibc does whenever nothing else holds the top of the heap.
    Which of the two a run sees depended on what else the process had done (with the old tree-based
    rewriter, which parsed the page too, the reference was fast; with the source-level one it was slow).
    So the heap keeps 64 MB of slack for every case alike (`mallopt(M_TOP_PAD)`, glibc only): each call
    is measured at its own cost, not at the cost of the kernel's page faults.
    """
    _keep_heap_slack()
    for case in all_cases:
        with contextlib.suppress(Exception):  # measure() reports the error
            case.ours()
            if case.reference is not None:
                case.reference()


_M_TOP_PAD = -2  # glibc's mallopt parameter number (malloc.h)


def _keep_heap_slack(size: int = 64 << 20) -> None:
    """Ask glibc to keep `size` bytes free at the top of the heap rather than trim it; elsewhere a no-op."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).mallopt(_M_TOP_PAD, size)


def measure(case: Case, repeat: int = 7) -> Measurement:
    """Time our call and the reference on the same input, each the best of `repeat` calls.

    A case whose call raises is reported as an error rather than ending the run: the rewriting core must
    never raise, and the other cases still deserve their numbers.
    """
    try:
        report = case.ours()
        ours, reference = _best_of_pairs(case.ours, case.reference, repeat, warmup=1)
    except Exception as exc:
        return Measurement(case, float("nan"), None, 0, (), f"{type(exc).__name__}: {exc}")
    rewritten = sum(rewrite.times for rewrite in report.rewrites)
    skipped = tuple(dict.fromkeys(str(skip) for skip in report.skipped))
    return Measurement(case, ours, reference, rewritten, skipped)


def _report(result: RewriteResult) -> Report:
    return Report(result.rewrites, result.skipped)


def _in_re(call: Callable[[], RewriteResult]) -> RewriteResult:
    """`call` with the HTML scan in the standard library's `re`, as where PyPcre is not installed."""
    with standard_library_only():
        return call()


def cases() -> list[Case]:
    """Every benchmark case, built from deterministic inputs."""
    page = docs_page()
    page_bytes = page.encode()
    html_headers = [("content-type", "text/html; charset=utf-8"), ("content-length", str(len(page_bytes)))]
    page_gzip = gzip.compress(page_bytes, compresslevel=6, mtime=0)
    gzip_headers = [
        ("content-type", "text/html; charset=utf-8"),
        ("content-encoding", "gzip"),
        ("content-length", str(len(page_gzip))),
    ]
    css = swagger_ui_asset("swagger-ui.css")
    css_urls = inject_css_urls(css, count=300)
    js = swagger_ui_asset("swagger-ui.js")
    js_urls = inject_url_literals(js, count=300)

    def bare_html() -> object:
        return LexborHTMLParser(page).html

    return [
        Case(
            "docs page, `rewrite_html`",
            len(page_bytes),
            lambda: _report(rewrite_html(page, CONFIG)),
            "selectolax parse+serialize",
            bare_html,
            1.5,
        ),
        Case(
            "docs page, `rewrite_html`, `re` only (no `speedups`)",
            len(page_bytes),
            lambda: _report(_in_re(lambda: rewrite_html(page, CONFIG))),
            "selectolax parse+serialize",
            bare_html,
        ),
        Case(
            "docs page, `rewrite_response` (text/html)",
            len(page_bytes),
            lambda: rewrite_response(html_headers, page_bytes, CONFIG).report,
            "selectolax parse+serialize",
            bare_html,
            1.5,
        ),
        Case(
            f"docs page as gzip ({_size(len(page_gzip))}), `rewrite_response`",
            len(page_bytes),
            lambda: rewrite_response(gzip_headers, page_gzip, CONFIG).report,
            "same, uncompressed",
            lambda: rewrite_response(html_headers, page_bytes, CONFIG),
        ),
        Case(
            "swagger-ui.css, `rewrite_css`",
            len(css.encode()),
            lambda: _report(rewrite_css(css, CONFIG)),
            "tinycss2 parse+serialize",
            lambda: tinycss2.serialize(tinycss2.parse_stylesheet(css)),
            0.05,
        ),
        Case(
            "swagger-ui.css + 300 url() rules, `rewrite_css`",
            len(css_urls.encode()),
            lambda: _report(rewrite_css(css_urls, CONFIG)),
            "tinycss2 parse+serialize",
            lambda: tinycss2.serialize(tinycss2.parse_stylesheet(css_urls)),
            0.05,
        ),
        Case("swagger-ui.js, `rewrite_js`", len(js.encode()), lambda: _report(rewrite_js(js, CONFIG))),
        Case(
            "swagger-ui.js + 300 URL literals, `rewrite_js`",
            len(js_urls.encode()),
            lambda: _report(rewrite_js(js_urls, CONFIG)),
        ),
    ]


def machine() -> str:
    """One Markdown paragraph naming the machine, the interpreter, the libraries and the date."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    names = ("selectolax", "tinycss2", "regex", "pypcre")
    versions = ", ".join(f"{name} {_version(name)}" for name in names)
    versions += f"; HTML scan in {'PCRE2 (JIT)' if engine() == 'pcre2' else '`re`'}"
    return (
        f"{platform.platform()}; {cpu}; {os.cpu_count()} CPUs; "
        f"{platform.python_implementation()} {platform.python_version()}; {versions}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def table(measurements: list[Measurement]) -> str:
    """The measurements as a Markdown table, followed by the reasons for skips and errors."""
    lines = [
        "| input | size | rewritten | ours ms | reference | ref. ms | ratio | MB/s | target | met? |",
        "|---|--:|--:|--:|---|--:|--:|--:|--:|:-:|",
    ]
    notes: list[str] = []
    for m in measurements:
        case = m.case
        if m.error is not None:
            lines.append(f"| {case.name} | {_size(case.size)} | **error** |  |  |  |  |  |  |  |")
            notes.append(f"- {case.name}: raised {m.error}")
            continue
        notes += [f"- {case.name}: skipped {reason}" for reason in m.skipped]
        rewritten = f"{m.rewritten} ({len(m.skipped)} skipped)" if m.skipped else str(m.rewritten)
        reference_ms = "" if m.reference is None else f"{m.reference * 1000:.1f}"
        ratio = "" if m.ratio is None else _ratio(m.ratio)
        target = "" if case.max_ratio is None else f"≤ {_ratio(case.max_ratio)}"
        met = {None: "", True: "yes", False: "**no**"}[m.met]
        if m.skipped and not m.rewritten and case.max_ratio is not None:
            met = "n/a: skipped"
        cells = [case.name, _size(case.size), rewritten, f"{m.ours * 1000:.1f}", case.reference_name]
        cells += [reference_ms, ratio, f"{m.mb_per_s:.1f}", target, met]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def _ratio(ratio: float) -> str:
    if ratio >= 0.5:
        return f"{ratio:.2f}x"
    return f"{ratio:.3f}x ({1 / ratio:.0f}x faster)"


def _size(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1e6:.2f} MB"
    return f"{size / 1e3:.0f} KB"
