"""Locate DCMTK command-line tools and the environment they need.

pynetdicom installs Python console scripts with the same names as DCMTK's tools (``echoscu``,
``findscu``, ``getscu``, ``movescu``, ``storescu``, ``storescp``) and, in a virtualenv or pyenv,
those come first on PATH. The devnet wants DCMTK's own binaries (independent implementation, the
same behaviour as the Debian package), so it picks the first ELF executable of that name on PATH.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from drimbox.devnet.errors import DevnetError

__all__ = ["dcmtk_env", "dcmtk_tool"]

_ELF_MAGIC = b"\x7fELF"


@functools.cache
def dcmtk_tool(name: str) -> str:
    """Absolute path of DCMTK's ``name`` binary (skipping same-named Python scripts).

    Raises
    ------
    DevnetError
        When no such binary is installed (Debian package ``dcmtk``).
    """
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = Path(directory or ".") / name
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        try:
            with candidate.open("rb") as fh:
                if fh.read(4) == _ELF_MAGIC:
                    return str(candidate.resolve())
        except OSError:
            continue
    raise DevnetError(f"DCMTK's {name} is not installed (Debian package 'dcmtk')")


def dcmtk_env() -> dict[str, str]:
    """The current environment plus ``TCP_NODELAY=1``.

    DCMTK only disables Nagle's algorithm when this variable is set; without it every DIMSE
    response waits for the peer's delayed ACK, ~40 ms each (ORTHANC-NOTES.md pitfall 1).
    """
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env
