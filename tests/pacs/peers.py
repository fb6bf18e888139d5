"""Types shared by the PACS bridge tests (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from drimbox.config import RemoteAE


@dataclass(frozen=True)
class Pacs:
    """A PACS under test: how to reach it and how to fill it."""

    name: str
    remote: RemoteAE
    load: Callable[[Iterable[Path]], object]


class Dcmtk(Protocol):
    """Runs a DCMTK tool: ``dcmtk("storescu", "-aec", "X", host, port, file)``."""

    def __call__(self, tool: str, *args: str | Path, timeout: float = ...) -> subprocess.CompletedProcess[str]: ...
