"""The package's declared public API."""

from __future__ import annotations

import drimbox.pacs


def test_all_is_sorted_and_complete() -> None:
    assert drimbox.pacs.__all__ == sorted(drimbox.pacs.__all__)
    for name in drimbox.pacs.__all__:
        assert getattr(drimbox.pacs, name).__module__.startswith("drimbox.pacs")
