"""Bridges from the backends' synchronous iterators to streamed ASGI responses.

Each ``next()`` runs in starlette's thread pool; the iterator is closed in a worker thread as
soon as the response ends for any reason — all sent, client gone, error — so a backend can
cancel its C-GET and release its association promptly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import anyio
from starlette.concurrency import run_in_threadpool

__all__ = ["aiterate_closing", "close_quietly", "first_item"]

T = TypeVar("T")
_END = object()


def _next(it: Iterator[T]) -> object:
    return next(it, _END)


async def first_item(it: Iterator[T]) -> T | None:
    """Pull the first item in a worker thread (backend errors surface here, before any byte is sent)."""
    item = await run_in_threadpool(_next, it)
    return None if item is _END else item  # type: ignore[return-value]


async def close_quietly(it: object) -> None:
    """Close ``it`` (if it can be) in a worker thread, even while being cancelled."""
    close = getattr(it, "close", None)
    if close is not None:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(close)


async def aiterate_closing(it: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Async iteration over ``it`` in worker threads; ``it`` is closed when this generator ends."""
    try:
        while True:
            chunk = await run_in_threadpool(_next, it)
            if chunk is _END:
                break
            assert isinstance(chunk, bytes)
            yield chunk
    finally:
        await close_quietly(it)
