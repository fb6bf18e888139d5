"""Every gateway module declares a sorted public API that exists, and never imports drimbox/registry."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import dicomweb_gateway

MODULES = sorted(
    ["dicomweb_gateway", *(m.name for m in pkgutil.walk_packages(dicomweb_gateway.__path__, "dicomweb_gateway."))]
)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolvable(name: str) -> None:
    """``__all__`` is sorted and every name in it exists."""
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported)
    assert all(hasattr(module, n) for n in exported)


def test_no_import_of_drimbox_or_registry() -> None:
    """The hard rule: the gateway imports nothing from the node or the registry."""
    root = Path(dicomweb_gateway.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in ("drimbox", "registry") for n in names), f"{path}: {names}"
