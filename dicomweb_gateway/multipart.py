"""Streaming ``multipart/related`` (RFC 2387, RFC 2046 §5.1) writer and incremental parser.

PS3.18 §8.6.1.2 carries every multi-instance payload as ``multipart/related``. Both directions
stream:

* :func:`iter_multipart` produces the body part by part as the parts are produced (a WADO-RS
  retrieve sends an instance while the backend is still fetching the next) and reads file bodies
  in chunks, so memory does not grow with the instance size.
* :class:`MultipartParser` is a push parser that finds parts by their boundary alone (no per-part
  ``Content-Length``). Each byte is examined a bounded number of times: after each chunk only a
  tail shorter than the delimiter is kept for the next search, so parsing is linear in the body
  size whatever the chunking. :func:`spool_parts` drives it from an ASGI body stream and spools
  each part to a temp file under the configured limits.

Leniencies, each seen in the field: a bare ``LF`` instead of ``CRLF`` before a delimiter and in
part headers, transport padding after a delimiter, a preamble and an epilogue.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from dicomweb_gateway.errors import MalformedMultipart, PayloadTooLarge

__all__ = [
    "MultipartParser",
    "Part",
    "PartData",
    "PartEnd",
    "PartStart",
    "SpooledPart",
    "iter_multipart",
    "new_boundary",
    "spool_parts",
]

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")  # RFC 2046 bchars


def new_boundary() -> str:
    """A fresh boundary (a UUID: 36 characters, never found in DICOM data in practice)."""
    return str(uuid.uuid4())


# ----------------------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class Part:
    """One body part to write.

    Attributes
    ----------
    content_type
        The part's ``Content-Type`` header value.
    body
        The bytes, a file to stream in chunks, or an iterable of chunks.
    headers
        Other part headers (``Content-Location``…).
    """

    content_type: str
    body: bytes | Path | Iterable[bytes]
    headers: Mapping[str, str] = field(default_factory=dict)


def iter_multipart(parts: Iterable[Part], boundary: str, *, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """Encode ``parts`` as a ``multipart/related`` body, lazily (PS3.18 §8.6.1.2).

    Parameters
    ----------
    parts
        Consumed one at a time, only when the previous part has been fully written; closing the
        returned generator closes ``parts`` too (when it is a generator).
    boundary
        The boundary announced in the response's ``Content-Type``.
    chunk_bytes
        Read size for file bodies.

    Yields
    ------
    bytes
        Delimiters, headers and body chunks, in order.
    """
    if not _BOUNDARY.match(boundary):
        raise ValueError(f"invalid multipart boundary {boundary!r}")
    delimiter = f"--{boundary}".encode("ascii")
    first = True
    source = iter(parts)
    try:
        for part in source:
            head = b"" if first else b"\r\n"
            first = False
            lines = [f"Content-Type: {part.content_type}"]
            lines += [f"{name}: {value}" for name, value in part.headers.items()]
            yield head + delimiter + b"\r\n" + "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
            yield from _body_chunks(part.body, chunk_bytes)
        if first:
            # RFC 2046 requires at least one body part; an empty multipart still needs a valid
            # closing delimiter for the client to parse.
            yield delimiter + b"--\r\n"
        else:
            yield b"\r\n" + delimiter + b"--\r\n"
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _body_chunks(body: bytes | Path | Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    if isinstance(body, bytes):
        yield body
    elif isinstance(body, Path):
        with body.open("rb", buffering=0) as f:
            while chunk := f.read(chunk_bytes):
                yield chunk
    else:
        yield from body


# ----------------------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class PartStart:
    """A part begins; its headers, names lower-cased, in order."""

    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PartData:
    """A piece of the current part's body."""

    data: bytes


@dataclass(frozen=True)
class PartEnd:
    """The current part is complete."""


Event = PartStart | PartData | PartEnd

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _EPILOGUE = range(5)


class MultipartParser:
    """Incremental ``multipart/related`` parser: :meth:`feed` chunks, get events.

    Parameters
    ----------
    boundary
        The boundary parameter of the body's ``Content-Type``.
    max_header_bytes
        Largest header block of one part.
    """

    def __init__(self, boundary: str, *, max_header_bytes: int = 16384) -> None:
        if not boundary or len(boundary) > 200:
            raise MalformedMultipart("multipart boundary is empty or too long")
        self._dash_boundary = b"--" + boundary.encode("latin-1")
        # A body chunk is only released once we know it cannot hold the start of a delimiter:
        # keep back len("\r\n--boundary") - 1 bytes.
        self._keep = len(self._dash_boundary) + 1
        self._max_header_bytes = max_header_bytes
        # Pretend the body starts with a line break so a delimiter on the very first line is found
        # by the same rule as every other one (it must begin a line).
        self._tail = b"\n"
        self._skip = 1  # bytes at the start of _tail already consumed, kept as look-behind context
        self._state = _PREAMBLE
        self.parts = 0

    @property
    def done(self) -> bool:
        """Whether the closing delimiter has been seen."""
        return self._state == _EPILOGUE

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next ``chunk`` of the body; return the events it completes."""
        if self._state == _EPILOGUE:
            return []
        data = self._tail + chunk if self._tail else chunk
        events: list[Event] = []
        pos = self._skip
        n = len(data)
        while pos < n:
            if self._state in (_PREAMBLE, _BODY):
                found = self._find_delimiter(data, pos)
                if found is None:
                    keep_from = max(pos, n - self._keep)
                    if self._state == _BODY and keep_from > pos:
                        events.append(PartData(data[pos:keep_from]))
                    pos = keep_from
                    break
                start, end = found
                if self._state == _BODY:
                    if start > pos:
                        events.append(PartData(data[pos:start]))
                    events.append(PartEnd())
                pos = end
                self._state = _AFTER_DELIMITER
            elif self._state == _AFTER_DELIMITER:
                step = self._after_delimiter(data, pos)
                if step is None:
                    break
                pos = step
            elif self._state == _HEADERS:
                step = self._headers(data, pos, events)
                if step is None:
                    break
                pos = step
        # Keep two consumed bytes as context: a delimiter at the start of the next chunk must be
        # seen to begin a line.
        context = max(0, pos - 2)
        self._tail, self._skip = data[context:], pos - context
        if self._state == _HEADERS and len(self._tail) > self._max_header_bytes:
            raise MalformedMultipart(f"part {self.parts} has a header block over {self._max_header_bytes} bytes")
        return events

    def close(self) -> None:
        """Declare the end of the body; raise if it was truncated."""
        if self._state == _EPILOGUE:
            return
        if self._state == _PREAMBLE:
            raise MalformedMultipart("no multipart boundary delimiter found in the body")
        raise MalformedMultipart(f"truncated multipart body: closing delimiter missing (in part {self.parts})")

    def _find_delimiter(self, data: bytes, pos: int) -> tuple[int, int] | None:
        """Start of the line break before the next delimiter, and the index just after it."""
        search = pos
        while True:
            i = data.find(self._dash_boundary, search)
            if i < 0:
                return None
            if i > 0 and data[i - 1] == 0x0A:  # a delimiter begins a line
                start = i - 2 if i >= 2 and data[i - 2] == 0x0D else i - 1
                return max(start, pos), i + len(self._dash_boundary)
            search = i + 1

    def _after_delimiter(self, data: bytes, pos: int) -> int | None:
        """After ``--boundary``: ``--`` (close) or padding + line break (next part)."""
        rest = data[pos : pos + 2]
        if len(rest) < 2:
            return None
        if rest == b"--":
            self._state = _EPILOGUE
            return len(data)
        eol = data.find(b"\n", pos)
        if eol < 0:
            if len(data) - pos > 256:
                raise MalformedMultipart("multipart delimiter followed by garbage")
            return None
        if data[pos:eol].rstrip(b"\r").strip(b" \t"):
            raise MalformedMultipart("multipart delimiter followed by garbage (boundary mismatch?)")
        self._state = _HEADERS
        self.parts += 1
        return eol + 1

    def _headers(self, data: bytes, pos: int, events: list[Event]) -> int | None:
        """Parse the header block once its empty line has arrived."""
        if data.startswith(b"\r\n", pos) or data.startswith(b"\n", pos):
            end, body = pos, data.index(b"\n", pos) + 1
        else:
            m = _HEADER_END.search(data, pos)
            if m is None:
                return None
            end, body = m.start() + 1, m.end()
        headers: list[tuple[str, str]] = []
        for raw in data[pos:end].split(b"\n"):
            line = raw.rstrip(b"\r")
            if not line:
                continue
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.match(name):
                text = line[:60].decode("latin-1")
                raise MalformedMultipart(f"part {self.parts}: malformed header line {text!r}")
            headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
        events.append(PartStart(tuple(headers)))
        self._state = _BODY
        return body


_HEADER_END = re.compile(rb"\n\r?\n")


# ---------------------------------------------------------------------------------------- spooling


@dataclass(frozen=True)
class SpooledPart:
    """A parsed part, its body in a temp file that the consumer deletes when done.

    Attributes
    ----------
    path
        The spooled body.
    headers
        Part headers, names lower-cased.
    size
        Body size in bytes.
    index
        1-based position in the request.
    """

    path: Path
    headers: Mapping[str, str]
    size: int
    index: int

    @property
    def content_type(self) -> str:
        """The part's ``Content-Type`` (``text/plain`` when absent, RFC 2046 §5.1)."""
        return self.headers.get("content-type", "text/plain")


class _Spooler:
    """Applies parser events to temp files (runs in a worker thread)."""

    def __init__(self, boundary: str, directory: Path | None, max_parts: int) -> None:
        self.parser = MultipartParser(boundary)
        self.directory = directory
        self.max_parts = max_parts
        self.file: tempfile._TemporaryFileWrapper[bytes] | None = None
        self.headers: dict[str, str] = {}
        self.size = 0
        self.ready: list[SpooledPart] = []

    def feed(self, chunk: bytes) -> list[SpooledPart]:
        for event in self.parser.feed(chunk):
            if isinstance(event, PartData):
                assert self.file is not None
                self.file.write(event.data)
                self.size += len(event.data)
            elif isinstance(event, PartStart):
                if self.parser.parts > self.max_parts:
                    raise PayloadTooLarge(f"more than {self.max_parts} parts in one request")
                self.headers = dict(event.headers)
                self.size = 0
                self.file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in PartEnd/discard
                    prefix="stow-", suffix=".part", dir=self.directory, delete=False
                )
            else:
                assert self.file is not None
                self.file.close()
                self.ready.append(SpooledPart(Path(self.file.name), self.headers, self.size, self.parser.parts))
                self.file = None
        out, self.ready = self.ready, []
        return out

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            with contextlib.suppress(OSError):
                os.unlink(self.file.name)
            self.file = None


async def spool_parts(
    stream: AsyncIterator[bytes],
    boundary: str,
    *,
    max_bytes: int,
    max_parts: int,
    directory: Path | None = None,
    batch_bytes: int = 1 << 20,
) -> AsyncIterator[SpooledPart]:
    """Parse a ``multipart/related`` request body, yielding each part once spooled to disk.

    Parsing and file writes run in worker threads, a batch of about ``batch_bytes`` at a time, so
    the event loop never blocks on disk and thread hops stay few. Memory stays at one batch.

    Parameters
    ----------
    stream
        The request body (``request.stream()``).
    boundary
        From the request's ``Content-Type``.
    max_bytes, max_parts
        Limits; exceeding either raises :class:`PayloadTooLarge`.
    directory
        Where temp files go (``None``: the system temp directory).

    Yields
    ------
    SpooledPart
        In request order; the consumer deletes ``path`` when done with it. Parts not yet
        yielded are deleted if parsing fails or the consumer stops early.
    """
    spooler = _Spooler(boundary, directory, max_parts)
    total = 0
    pending: list[SpooledPart] = []
    batch: list[bytes] = []
    batched = 0
    try:
        async for chunk in stream:
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge(f"request body over the {max_bytes}-byte limit")
            batch.append(chunk)
            batched += len(chunk)
            if batched >= batch_bytes:
                pending += await run_in_threadpool(spooler.feed, b"".join(batch))
                batch, batched = [], 0
                while pending:
                    yield pending.pop(0)
        if batch:
            pending += await run_in_threadpool(spooler.feed, b"".join(batch))
        spooler.parser.close()
        while pending:
            yield pending.pop(0)
    finally:
        spooler.discard()
        for part in pending:
            with contextlib.suppress(OSError):
                part.path.unlink()
