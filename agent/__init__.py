"""The developer's side: the `tunnel` command line, the forwarder, and the filter demo (I/O lives here)."""

from __future__ import annotations

__all__: list[str] = []
