"""Regular expressions written for the standard library's `re`, run by PCRE2's JIT compiler where PyPcre is
installed (the `speedups` extra) and by `re` itself otherwise or wherever PCRE2 cannot take the text. Pure.

The HTML source scan (`rewrite.html_source`) is the one user: on a 1.2 MB page its pattern runs about
four times faster JIT-compiled than in `re`, which puts the whole rewrite near the time of a bare selectolax
parse and serialise. `\\Z` is translated (PCRE2's `\\z`); what else the engines read differently stays out
of the patterns, and a pattern that holds it anyway runs in `re`: `\\w`, `\\d`, `\\s` and `\\b` (always
Unicode in `re`, in PCRE2 only under its UCP option; `[\\s\\S]` is the same in both) and `{,n}` (literal
text before PCRE2 10.43).
tests/rewrite/test_fast_re.py holds the engines to the same results on generated pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import ModuleType
from typing import Any, Final

# Nothing here is part of the filter's API: rewrite.html_source uses FastPattern, and the tests and
# benchmarks that compare the engines import engine() and standard_library_only() from here.
__all__: list[str] = []

PCRE2: Final = "pcre2"
STANDARD_LIBRARY: Final = "re"

# Python's \Z is the very end of the text, PCRE2's \Z the end or before a final newline; PCRE2's \z is
# Python's \Z. Only an odd number of backslashes makes an escape.
_END_OF_TEXT = re.compile(r"(?<!\\)((?:\\\\)*+)\\Z")
# What the engines may read differently: class escapes (Unicode in PCRE2 only with UCP) and `{,n}`.
_DIFFERENT = re.compile(r"(?<!\\)(?:\\\\)*+\\[wWdDsSbB]|\{,")
_FLAGS = {re.VERBOSE: "VERBOSE", re.IGNORECASE: "IGNORECASE", re.DOTALL: "DOTALL"}


class _Settings:
    use_pcre2 = True  # switched off by standard_library_only()


@cache
def _pcre() -> ModuleType | None:
    """PyPcre, imported on first use (it takes about 30 ms), or None when it is not installed."""
    try:
        import pcre
    except ImportError:
        return None
    module: ModuleType = pcre
    return module


def engine() -> str:
    """The engine a FastPattern runs in now: "pcre2" (PyPcre installed) or "re"."""
    return PCRE2 if _Settings.use_pcre2 and _pcre() is not None else STANDARD_LIBRARY


@contextmanager
def standard_library_only() -> Iterator[None]:
    """Run every FastPattern in `re` inside the block: for tests and benchmarks that compare the engines.
    Not thread-safe: it switches the whole process."""
    before = _Settings.use_pcre2
    _Settings.use_pcre2 = False
    try:
        yield
    finally:
        _Settings.use_pcre2 = before


class FastPattern:
    """One pattern in `re` syntax with `re`'s results, compiled for each engine when first used.

    Args:
        pattern: The pattern, as `re.compile` takes it.
        flags: Any of `re.VERBOSE`, `re.IGNORECASE` and `re.DOTALL`.
    """

    __slots__ = ("_compiled", "_jit", "flags", "pattern")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        if flags & ~sum(_FLAGS):
            raise ValueError(f"FastPattern takes only {' | '.join(_FLAGS.values())}, got {flags!r}")
        self.pattern = pattern
        self.flags = flags
        self._compiled: re.Pattern[str] | None = None
        self._jit: Any = None  # a pcre.Pattern; False where PCRE2 refused the pattern

    def split(self, text: str) -> list[Any]:
        """What `re.split` returns: the pieces between matches, and each match's groups."""
        return self._run("split", text)

    def findall(self, text: str) -> list[Any]:
        """What `re.findall` returns: every match, or its group, or the tuple of its groups."""
        return self._run("findall", text)

    def _run(self, method: str, text: str) -> list[Any]:
        jit = self._pcre2_pattern()
        if jit is not None:
            try:
                return getattr(jit, method)(text)  # type: ignore[no-any-return]
            except (ValueError, _pcre_error()):
                pass  # a lone surrogate (no UTF-8 for PCRE2) or one of its limits: `re` does it
        return getattr(self._re_pattern(), method)(text)  # type: ignore[no-any-return]

    def _re_pattern(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled

    def _pcre2_pattern(self) -> Any:
        if not _Settings.use_pcre2:
            return None
        if self._jit is None:
            pcre = _pcre()
            self._jit = False if pcre is None else _compile_pcre2(pcre, self.pattern, self.flags)
        return self._jit or None


def _compile_pcre2(pcre: ModuleType, pattern: str, flags: int) -> Any:
    """The pattern JIT-compiled by PCRE2, or False when PCRE2 would read it differently or refuses it (then
    `re` runs it)."""
    if _DIFFERENT.search(pattern.replace(r"[\s\S]", "")):
        return False
    options = 0
    for flag, name in _FLAGS.items():
        if flags & flag:
            options |= getattr(pcre, name)
    try:
        compiled = pcre.compile(_END_OF_TEXT.sub(r"\1\\z", pattern), options)
    except (pcre.PcreError, ValueError):
        return False
    return compiled if compiled.jit else False  # without the JIT, PCRE2 is no faster than `re`


def _pcre_error() -> type[Exception]:
    pcre = _pcre()
    return ValueError if pcre is None else pcre.PcreError
