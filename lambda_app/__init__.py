"""The gateway's logic over a store and a transport, and the AWS Lambda edge (built by a later issue)."""

from __future__ import annotations

__all__: list[str] = []
