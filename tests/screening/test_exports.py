"""The package's declared public API: each module's ``__all__`` sorted, and what it names defined there."""

from __future__ import annotations

import importlib
import pkgutil

import drimbox.screening


def test_all_is_sorted_and_complete() -> None:
    assert drimbox.screening.__all__ == sorted(drimbox.screening.__all__)
    for name in drimbox.screening.__all__:
        assert getattr(drimbox.screening, name).__module__.startswith("drimbox.screening")
    for info in pkgutil.iter_modules(drimbox.screening.__path__):
        module = importlib.import_module(f"drimbox.screening.{info.name}")
        assert module.__all__ == sorted(module.__all__), info.name
        assert all(hasattr(module, name) for name in module.__all__), info.name
