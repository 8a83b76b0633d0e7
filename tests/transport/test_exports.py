"""Tests for transport/__init__.py: it re-exports exactly what the modules declare public."""

from __future__ import annotations

import importlib
import pkgutil

import transport


def _module_names() -> list[str]:
    return [info.name for info in pkgutil.iter_modules(transport.__path__)]


def test_package_exports_match_module_all() -> None:
    """transport.__all__ is the union of every module's __all__, each name bound to the same object."""
    declared: dict[str, object] = {}
    for name in _module_names():
        module = importlib.import_module(f"transport.{name}")
        for public in module.__all__:
            declared[public] = getattr(module, public)
    assert sorted(transport.__all__) == sorted(declared)
    for public, value in declared.items():
        assert getattr(transport, public) is value, public


def test_every_module_declares_all_and_a_docstring() -> None:
    """Every transport module has __all__ and a docstring that says what it does."""
    for name in _module_names():
        module = importlib.import_module(f"transport.{name}")
        assert isinstance(module.__all__, list), name
        assert module.__doc__, name
        assert len(module.__doc__.strip()) > 20, name
        assert len(module.__all__) == len(set(module.__all__)), name
