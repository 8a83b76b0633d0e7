"""Reproducible speed measurements of the rewriting core: `make bench`, or `python -m benchmarks`."""

from __future__ import annotations

__all__: list[str] = []
