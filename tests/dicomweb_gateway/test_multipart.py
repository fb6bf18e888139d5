"""multipart/related writer and incremental parser: round trips, leniencies, errors, linear time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomweb_gateway.errors import MalformedMultipart, PayloadTooLarge
from dicomweb_gateway.multipart import (
    MultipartParser,
    Part,
    PartData,
    PartEnd,
    PartStart,
    iter_multipart,
    new_boundary,
    spool_parts,
)

BOUNDARY = "b0undary-7f3c"


def parse(body: bytes, boundary: str = BOUNDARY, cuts: list[int] | None = None) -> list[tuple[dict[str, str], bytes]]:
    """Feed ``body`` cut at ``cuts`` (sorted offsets) and rebuild the parts."""
    parser = MultipartParser(boundary)
    events = []
    start = 0
    for cut in [*(cuts or []), len(body)]:
        events += parser.feed(body[start:cut])
        start = cut
    parser.close()
    parts: list[tuple[dict[str, str], bytes]] = []
    headers: dict[str, str] = {}
    data = bytearray()
    for event in events:
        if isinstance(event, PartStart):
            headers, data = dict(event.headers), bytearray()
        elif isinstance(event, PartData):
            data += event.data
        else:
            assert isinstance(event, PartEnd)
            parts.append((headers, bytes(data)))
    return parts


def encode(bodies: list[bytes], boundary: str = BOUNDARY) -> bytes:
    return b"".join(iter_multipart([Part("application/dicom", b) for b in bodies], boundary))


BODIES = [b"", b"x", b"\r\n", b"\r", b"\n", b"--b0undary", b"data\r\n--b0undary-7f3", b"\r\n--", bytes(range(256)) * 9]


def test_round_trip_whole() -> None:
    """Every body comes back identical, headers lower-cased."""
    parts = parse(encode(BODIES))
    assert [b for _, b in parts] == BODIES
    assert all(h == {"content-type": "application/dicom"} for h, _ in parts)


@settings(max_examples=300, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=200), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=40),
)
def test_round_trip_any_chunking(bodies: list[bytes], cuts: list[int]) -> None:
    """Whatever the chunk boundaries (including inside the delimiter), parts are identical."""
    body = encode(bodies)
    assume_ok = [b for b in bodies if BOUNDARY.encode() not in b]
    if assume_ok != bodies:
        return  # a body containing the boundary is not a valid multipart body
    cleaned = sorted({c for c in cuts if c <= len(body)})
    assert [b for _, b in parse(body, cuts=cleaned)] == bodies


@pytest.mark.parametrize("split", range(1, len(f"\r\n--{BOUNDARY}\r\n")))
def test_delimiter_split_across_chunks(split: int) -> None:
    """A delimiter cut at every possible position is still found."""
    body = encode([b"first", b"second"])
    delimiter_at = body.index(f"\r\n--{BOUNDARY}\r\n".encode(), 10)
    assert [b for _, b in parse(body, cuts=[delimiter_at + split])] == [b"first", b"second"]


def test_byte_by_byte() -> None:
    """One byte per feed."""
    body = encode(BODIES)
    assert [b for _, b in parse(body, cuts=list(range(1, len(body))))] == BODIES


def test_preamble_epilogue_and_lf_only() -> None:
    """A preamble and epilogue are ignored; bare LF line breaks are accepted."""
    body = b"This is a preamble\r\n" + encode([b"abc", b"def"]) + b"epilogue text\r\n"
    assert [b for _, b in parse(body)] == [b"abc", b"def"]
    lf = f"--{BOUNDARY}\nContent-Type: application/dicom\n\nabc\n--{BOUNDARY}\n\ndef\n--{BOUNDARY}--".encode()
    parts = parse(lf)
    assert [b for _, b in parts] == [b"abc", b"def"]
    assert parts[1][0] == {}


def test_transport_padding_and_headers() -> None:
    """Spaces after a delimiter and several headers per part."""
    body = (
        f"--{BOUNDARY}  \r\nContent-Type: application/dicom\r\nContent-Location: /x\r\n\r\nabc\r\n--{BOUNDARY}--  \r\n"
    ).encode()
    [(headers, data)] = parse(body)
    assert headers == {"content-type": "application/dicom", "content-location": "/x"}
    assert data == b"abc"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no delimiter at all", "no multipart boundary"),
        (f"--{BOUNDARY}\r\nContent-Type: x\r\n\r\ntruncated".encode(), "truncated"),
        (f"--{BOUNDARY}\r\nContent-Type: x\r\n".encode(), "truncated"),
        (f"--{BOUNDARY}\r\nNo colon here\r\n\r\nabc\r\n--{BOUNDARY}--".encode(), "malformed header"),
        (f"--{BOUNDARY}xyz\r\n\r\nabc\r\n--{BOUNDARY}--".encode(), "garbage"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    """Clear errors for the usual ways a body is broken."""
    with pytest.raises(MalformedMultipart, match=message):
        parse(body)


def test_header_block_limit() -> None:
    """An endless header block is refused."""
    parser = MultipartParser(BOUNDARY, max_header_bytes=100)
    parser.feed(f"--{BOUNDARY}\r\n".encode())
    with pytest.raises(MalformedMultipart, match="header block"):
        parser.feed(b"X-Long: " + b"a" * 200)


def test_writer_streams_files_in_chunks(tmp_path: Path) -> None:
    """File bodies are read in chunks of the requested size and parts are produced lazily."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"z" * 10_000)
    produced: list[str] = []

    def parts() -> object:
        produced.append("a")
        yield Part("application/dicom", path)
        produced.append("b")
        yield Part("application/dicom", b"small")

    stream = iter_multipart(parts(), BOUNDARY, chunk_bytes=4096)  # type: ignore[arg-type]
    first = [next(stream) for _ in range(4)]  # header + 3 chunks of the file
    assert produced == ["a"]
    assert [len(c) for c in first[1:]] == [4096, 4096, 1808]
    rest = b"".join(stream)
    assert [b for _, b in parse(b"".join(first) + rest)] == [b"z" * 10_000, b"small"]


def test_empty_multipart_is_well_formed() -> None:
    """No part at all still yields a closing delimiter."""
    assert b"".join(iter_multipart([], BOUNDARY)) == f"--{BOUNDARY}--\r\n".encode()


def _time_parse(body: bytes, chunk: int) -> float:
    parser = MultipartParser(BOUNDARY)
    start = time.perf_counter()
    for i in range(0, len(body), chunk):
        parser.feed(body[i : i + chunk])
    parser.close()
    return time.perf_counter() - start


def test_linear_time() -> None:
    """A 50 MB body (many parts, small chunks) parses in time proportional to its size."""
    part = bytes(range(256)) * 40  # 10 KiB with CR, LF and '-' bytes everywhere
    small = encode([part] * 500)  # ~5 MB
    large = encode([part] * 5000)  # ~50 MB
    assert len(large) > 50_000_000
    t_small = min(_time_parse(small, 8192) for _ in range(3))
    t_large = _time_parse(large, 8192)
    assert t_large < 20 * t_small + 0.05, (t_small, t_large)
    assert t_large < 5.0


async def _stream(data: bytes, chunk: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


def _spool(body: bytes, **limits: int) -> list[tuple[dict[str, str], bytes]]:
    async def run() -> list[tuple[dict[str, str], bytes]]:
        out = []
        async for part in spool_parts(
            _stream(body, 1000), BOUNDARY, max_bytes=limits.get("max_bytes", 10**9),
            max_parts=limits.get("max_parts", 100), batch_bytes=3000,
        ):  # fmt: skip
            out.append((dict(part.headers), part.path.read_bytes()))
            part.path.unlink()
        return out

    return asyncio.run(run())


def test_spool_parts_round_trip(tmp_path: Path) -> None:
    """Parts are spooled to files with their headers."""
    bodies = [b"a" * 5000, b"", b"b" * 7]
    assert [b for _, b in _spool(encode(bodies))] == bodies


def test_spool_limits() -> None:
    """Size and part-count limits raise PayloadTooLarge."""
    with pytest.raises(PayloadTooLarge, match="byte limit"):
        _spool(encode([b"a" * 5000]), max_bytes=4000)
    with pytest.raises(PayloadTooLarge, match="parts"):
        _spool(encode([b"a"] * 5), max_parts=3)


def test_spool_truncated_cleans_up(tmp_path: Path) -> None:
    """A truncated body raises and leaves no temp file behind."""
    body = encode([b"a" * 5000, b"b" * 5000])[:-3000]
    before = set(Path("/tmp").glob("stow-*.part"))
    with pytest.raises(MalformedMultipart, match="truncated"):
        _spool(body)
    assert set(Path("/tmp").glob("stow-*.part")) <= before


def test_new_boundary_is_valid() -> None:
    """Fresh boundaries are accepted by the writer and differ."""
    a, b = new_boundary(), new_boundary()
    assert a != b
    assert [x for _, x in parse(encode([b"q"], a), a)] == [b"q"]
