"""Bridges from the backends' synchronous iterators to streamed ASGI responses.

Two bridges:

* :func:`aiterate_closing`: each ``next()`` runs in starlette's thread pool, one at a time;
* :func:`aiterate_read_ahead`: one producer thread per response iterates (reads files) up to
  ``max_ahead_bytes`` ahead of the event loop, which sends whatever is ready without a thread
  round-trip per chunk: reading overlaps sending, and a study of hundreds of small instances no
  longer costs thread hops per piece. A backend iterator that may block (waiting for the PACS) is
  wrapped in :func:`paced`: its next item is asked for only once everything before it has been
  sent, as with one ``next()`` at a time — so a client that goes away never leaves the producer
  stuck in the backend, and the backend is closed promptly.

Either way the iterator is closed in a worker thread as soon as the response ends for any
reason — all sent, client gone, error — so a backend can cancel its C-GET and release its
association promptly; the response waits (shielded) for that close.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import anyio
from starlette.concurrency import run_in_threadpool

__all__ = ["Demand", "aiterate_closing", "aiterate_read_ahead", "close_quietly", "first_item", "paced"]

T = TypeVar("T")
_END = object()
_log = logging.getLogger(__name__)


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


class Demand:
    """Whether the consumer of a read-ahead stream has caught up (sent all that was produced)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._caught_up = True
        self._stopped = False

    def wait(self) -> bool:
        """Block until the consumer has caught up; ``False`` when the stream has ended."""
        with self._cond:
            while not self._caught_up and not self._stopped:
                self._cond.wait()
            return not self._stopped

    def _set(self, caught_up: bool) -> None:
        with self._cond:
            if self._caught_up != caught_up:
                self._caught_up = caught_up
                self._cond.notify_all()

    def _stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


def paced(it: Iterator[T], demand: Demand) -> Iterator[T]:
    """``it``, each item asked for only once ``demand`` says the consumer has caught up."""
    try:
        while demand.wait():
            item = next(it, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class _ReadAhead:
    """A bounded hand-over of chunks from a producer thread to the event loop."""

    def __init__(
        self, it: Iterator[bytes], loop: asyncio.AbstractEventLoop, max_bytes: int, demand: Demand | None
    ) -> None:
        self._it = it
        self._demand = demand
        self._loop = loop
        self._max = max(1, max_bytes)
        self._cond = threading.Condition()
        self._items: deque[bytes] = deque()
        self._bytes = 0
        self._done = False
        self._stop = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.finished: asyncio.Future[None] = loop.create_future()

    # -- producer thread ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                with self._cond:
                    while self._bytes >= self._max and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        break
                chunk = next(self._it, _END)
                if chunk is _END:
                    break
                assert isinstance(chunk, bytes | memoryview)
                if self._demand is not None:
                    self._demand._set(False)
                with self._cond:
                    self._items.append(bytes(chunk) if isinstance(chunk, memoryview) else chunk)
                    self._bytes += len(chunk)
                    self._wake()
        except BaseException as exc:  # noqa: BLE001 - raised in the event loop, after what was produced
            self._error = exc
        finally:
            try:
                close = getattr(self._it, "close", None)
                if close is not None:
                    close()
            except Exception:
                _log.exception("closing a streamed iterator failed")
            finally:
                with self._cond:
                    self._done = True
                    self._wake()
                self._loop.call_soon_threadsafe(_resolve, self.finished)

    def _wake(self) -> None:
        """Under the lock: resume the event loop if it waits for a chunk."""
        if self._waiter is not None:
            self._loop.call_soon_threadsafe(_resolve, self._waiter)
            self._waiter = None

    # -- event loop --------------------------------------------------------------------------------

    async def get(self) -> bytes | None:
        while True:
            with self._cond:
                if self._items:
                    chunk = self._items.popleft()
                    full = self._bytes >= self._max
                    self._bytes -= len(chunk)
                    if full and self._bytes < self._max:
                        self._cond.notify_all()
                    return chunk
                if self._done:
                    if self._error is not None:
                        raise self._error
                    return None
                waiter = self._waiter = self._loop.create_future()
            if self._demand is not None:
                # Everything produced has been sent (the previous chunk's send has returned).
                self._demand._set(True)
            await waiter

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._demand is not None:
            self._demand._stop()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def aiterate_read_ahead(
    it: Iterator[bytes], *, max_ahead_bytes: int, demand: Demand | None = None
) -> AsyncIterator[bytes]:
    """Async iteration over ``it``, produced by a thread of its own up to ``max_ahead_bytes`` ahead.

    ``it`` is iterated and closed in that thread only (never concurrently), with the caller's
    context variables; an error it raises is raised here after the chunks produced before it.
    ``demand`` is told when everything produced has been sent (see :func:`paced`).
    """
    loop = asyncio.get_running_loop()
    ahead = _ReadAhead(it, loop, max_ahead_bytes, demand)
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(ahead.run,), name="stream-read-ahead", daemon=True).start()
    try:
        while (chunk := await ahead.get()) is not None:
            yield chunk
    finally:
        ahead.stop()
        with anyio.CancelScope(shield=True):
            await ahead.finished
