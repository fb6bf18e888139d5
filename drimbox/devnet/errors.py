"""The devnet's one exception type."""

from __future__ import annotations

__all__ = ["DevnetError"]


class DevnetError(RuntimeError):
    """A development server failed to start or to answer; the message carries its log tail."""
