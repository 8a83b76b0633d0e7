"""Each package re-exports exactly the public names its modules declare, as httpx and websockets do."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ["rewrite", "transport", "lambda_app", "agent"]


def _modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    return [f"{package}.{info.name}" for info in pkgutil.iter_modules(root.__path__) if not info.ispkg]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_declares_all(package: str) -> None:
    """Every module says what it exports, and exports only names it defines or imports."""
    for name in _modules(package):
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        for export in module.__all__:
            assert hasattr(module, export), f"{name}.__all__ names missing {export}"


def test_rewrite_exports_come_from_its_modules() -> None:
    """rewrite/__init__.py re-exports only names its modules declare, as the very same objects."""
    package = importlib.import_module("rewrite")
    declared: dict[str, object] = {}
    for name in _modules("rewrite"):
        module = importlib.import_module(name)
        for export in module.__all__:
            declared.setdefault(export, getattr(module, export))
    for export in package.__all__:
        assert export in declared, f"rewrite exports {export}, which no module declares"
        assert getattr(package, export) is declared[export]
    assert {"RewriteConfig", "rewrite_response", "rewrite_request"} <= set(package.__all__)
