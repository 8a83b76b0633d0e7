"""What a rewriter did: the new text, each rewrite, and each part it left alone and why. Pure values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Report", "ResponseResult", "Rewrite", "RewriteResult", "Skipped"]


class Rewrite(NamedTuple):
    """One URL that was changed, or `times` alike ones. A named tuple: pages hold thousands of these."""

    where: str  # "a[href]", "css url()", "js fetch()", "header Location", ...
    before: str
    after: str
    times: int = 1


@dataclass(frozen=True, slots=True)
class Skipped:
    """A part of the response that was passed through unchanged, and why."""

    reason: str
    where: str = ""
    excerpt: str = ""

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        excerpt = f" ({self.excerpt!r})" if self.excerpt else ""
        return f"{where}{self.reason}{excerpt}"


@dataclass(frozen=True, slots=True)
class RewriteResult:
    """The outcome of rewriting one decoded text (HTML, CSS, JS or JSON)."""

    text: str
    rewrites: tuple[Rewrite, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @property
    def changed(self) -> bool:
        """True when `text` differs from the input."""
        return bool(self.rewrites)


@dataclass(frozen=True, slots=True)
class Report:
    """Everything rewritten in, and everything skipped of, one response."""

    rewrites: tuple[Rewrite, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    def __str__(self) -> str:
        rewritten = sum(rewrite.times for rewrite in self.rewrites)
        lines = [f"{rewritten} rewritten, {len(self.skipped)} skipped"]
        lines += [f"  skipped {skipped}" for skipped in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ResponseResult:
    """A response ready to send: headers with Content-Length right, the body, and the report."""

    headers: list[tuple[str, str]]
    body: bytes
    report: Report
    changed: bool
