"""Where the prebuilt OHIF viewer lives.

The node serves the ``dist/`` of the npm package ``@ohif/app`` as shipped (never rebuilt, so serving it
needs no Node runtime). ``scripts/setup.sh`` installs it under the Python environment's prefix, next to
the node's own code, so that one virtual environment is one complete installation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from drimbox.config import NodeSettings
from drimbox.errors import ConfigError

__all__ = ["OHIF_VERSION", "default_ohif_dist", "ohif_dist"]

OHIF_VERSION: Final = "3.13.2"
"""The ``@ohif/app`` release the node's configuration and hanging-protocol tests are written for."""


def default_ohif_dist() -> Path:
    """``<sys.prefix>/share/drimbox/ohif/<version>/dist``: where ``scripts/setup.sh`` puts it."""
    return Path(sys.prefix) / "share" / "drimbox" / "ohif" / OHIF_VERSION / "dist"


def ohif_dist(settings: NodeSettings) -> Path:
    """The OHIF ``dist/`` directory to serve: ``viewer.ohif_dist``, else :func:`default_ohif_dist`.

    Raises
    ------
    ConfigError
        When the directory has no ``index.html`` (not installed, or a wrong path): the node refuses to
        start a viewer it cannot serve rather than answering 404s to the radiologist later.
    """
    configured = settings.viewer.ohif_dist
    path = (configured if configured is not None else default_ohif_dist()).expanduser()
    if not (path / "index.html").is_file():
        how = "set viewer.ohif_dist to the dist/ of @ohif/app" if configured is not None else \
            f"run scripts/setup.sh (it installs @ohif/app@{OHIF_VERSION}) or set viewer.ohif_dist"
        raise ConfigError(f"viewer.ohif_dist: no OHIF viewer at {path} (index.html missing); {how}",
                          key="viewer.ohif_dist")
    return path.resolve()
