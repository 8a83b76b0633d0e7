"""Each package re-exports exactly the public names its modules declare, as httpx and websockets do."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

PACKAGES = ["rewrite", "transport", "lambda_app", "agent"]


def _modules(package: str) -> list[ModuleType]:
    root = importlib.import_module(package)
    return [
        importlib.import_module(f"{package}.{info.name}")
        for info in pkgutil.iter_modules(root.__path__)
        if not info.ispkg and info.name != "__main__"
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_declares_all_and_says_what_it_does(package: str) -> None:
    """Every module has a docstring and an __all__ of names it really binds, without repeats."""
    for module in _modules(package):
        assert module.__doc__, module.__name__
        assert len(module.__doc__.strip()) > 20, module.__name__
        assert len(module.__all__) == len(set(module.__all__)), module.__name__
        for export in module.__all__:
            assert hasattr(module, export), f"{module.__name__}.__all__ names missing {export}"


@pytest.mark.parametrize("package", PACKAGES)
def test_package_exports_match_its_modules(package: str) -> None:
    """A package's __all__ is the union of its modules' __all__, each name bound to the very same object."""
    root = importlib.import_module(package)
    submodules = {module.__name__.rpartition(".")[2] for module in _modules(package)}
    declared: dict[str, object] = {}
    for module in _modules(package):
        for export in module.__all__:
            declared[export] = getattr(module, export)
    # A function named like its module (`lambda_app.handler.handler`, the name Lambda is configured with)
    # is reached through the module: the package attribute must stay the submodule.
    assert sorted(root.__all__) == sorted(set(declared) - submodules)
    for export, value in declared.items():
        holder = getattr(root, export) if export in submodules else root
        assert getattr(holder, export) is value, export
