"""Checks of an untrusted zip archive before anything of it touches the disk (XDM import, F10).

An XDM archive comes from outside the site (a CD, a USB key, a mail attachment, an upload): it is
hostile input. Everything here works on the zip's *central directory and local headers* only, so an
archive is judged before a single member is inflated, and every problem is collected (the operator
sees the whole list, not the first failure):

- zip bombs: too many members, a member or the whole archive inflating beyond the limits, a
  compression ratio no DICOM file reaches, members whose data overlap (the "overlapping files"
  construction that makes a small archive inflate without bound);
- paths: ``..``, absolute paths, drive letters, control characters, names that collide once
  normalised (``a/B.dcm`` and ``A/b.dcm`` are one file on a case-insensitive disk);
- members that are not plain files: symbolic links, devices, encrypted members, compression methods
  other than stored/deflate.

The header sizes are declarations, not facts: :func:`copy_member` counts what it really inflates
and stops at the limit whatever the header said.
"""

from __future__ import annotations

import hashlib
import re
import stat
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "CopyResult",
    "MemberTooLarge",
    "XdmLimits",
    "check_archive",
    "copy_member",
    "is_dicom_head",
    "member_paths",
    "normalise_name",
    "path_problem",
]

_MiB = 1024**2
_GiB = 1024**3
_CHUNK = 1 * _MiB
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ALLOWED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


@dataclass(frozen=True, slots=True)
class XdmLimits:
    """How much an imported archive may hold; beyond any of these it is refused as a zip bomb.

    The defaults fit a large study (a tomosynthesis exam is a few GiB) and nothing a bomb needs.
    The ratio is only judged on members above ``ratio_floor_bytes``: small files (an empty text, a
    KOS) legitimately compress far better than images.
    """

    max_total_bytes: int = 20 * _GiB
    """Sum of the inflated sizes of every member."""
    max_member_bytes: int = 4 * _GiB
    """Inflated size of any one member (a multi-frame instance reaches ~4 GiB)."""
    max_members: int = 50_000
    max_ratio: float = 200.0
    """Inflated / compressed size of one member; deflate cannot exceed ~1032, DICOM pixels rarely 20."""
    ratio_floor_bytes: int = 1 * _MiB
    max_metadata_bytes: int = 16 * _MiB
    """METADATA.XML is read in memory (to be parsed): this bounds it."""


class MemberTooLarge(Exception):
    """A member inflated beyond a limit while being copied (the header lied, or the limit is reached)."""


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What :func:`copy_member` wrote: real size, SHA-1 (upper-case hex, as XDS writes it), first bytes."""

    size: int
    sha1: str
    head: bytes


def normalise_name(name: str) -> str:
    """The member name as a relative POSIX path: backslashes as separators, ``.`` and empty parts dropped.

    Windows tools sometimes write ``\\``; treating it as a separator makes ``..\\x`` visible as traversal.
    """
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def path_problem(name: str) -> str | None:
    """Why ``name`` may not be used as a path inside the extraction directory (``None`` when it may)."""
    unified = name.replace("\\", "/")
    if _CONTROL.search(name):
        return f"{name!r}: control character in the name"
    if unified.startswith("/"):
        return f"{name!r}: absolute path"
    if _DRIVE.match(unified):
        return f"{name!r}: absolute path (drive letter)"
    if any(part == ".." for part in unified.split("/")):
        return f"{name!r}: path traversal ('..')"
    if not normalise_name(name):
        return f"{name!r}: empty path"
    return None


def _file_type(info: zipfile.ZipInfo) -> int:
    """The Unix file type bits (0 when the archive was not made on Unix or says nothing)."""
    if info.create_system != 3:  # 3 = Unix; other systems do not store a st_mode
        return 0
    return stat.S_IFMT(info.external_attr >> 16)


def _member_problems(info: zipfile.ZipInfo, limits: XdmLimits) -> list[str]:
    problems: list[str] = []
    name = info.filename
    where = path_problem(name)
    if where:
        problems.append(where)
    kind = _file_type(info)
    if kind == stat.S_IFLNK:
        problems.append(f"{name!r}: symbolic link member")
    elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        problems.append(f"{name!r}: special file member (mode {oct(kind)})")
    if info.flag_bits & 0x1:
        problems.append(f"{name!r}: encrypted member")
    if info.is_dir():
        return problems
    if info.compress_type not in _ALLOWED_METHODS:
        problems.append(f"{name!r}: unsupported compression method {info.compress_type}")
    if info.file_size > limits.max_member_bytes:
        problems.append(f"{name!r}: too large, inflates to {info.file_size} bytes (limit {limits.max_member_bytes})")
    if info.file_size >= limits.ratio_floor_bytes:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            problems.append(f"{name!r}: zip bomb, compression ratio {ratio:.0f} (limit {limits.max_ratio:.0f})")
    return problems


def _overlap_problems(archive: BinaryIO, infos: list[zipfile.ZipInfo]) -> list[str]:
    """Members whose data overlap, or whose local header disagrees with the central directory.

    A zip bomb can make every central entry point at the same compressed kernel; each member then
    looks small and honest on its own. Extraction tools also read the *local* name: one that differs
    from the central name is how an archive shows a checker one path and writes another.
    """
    problems: list[str] = []
    archive.seek(0, 2)
    end = archive.tell()
    spans: list[tuple[int, int, str]] = []
    for info in infos:
        if not 0 <= info.header_offset < end:  # a forged central directory (found by tests/security/test_fuzz.py)
            problems.append(f"{info.filename!r}: corrupt archive, local header offset {info.header_offset} "
                            f"outside the {end}-byte file")
            continue
        archive.seek(info.header_offset)
        raw = archive.read(_LOCAL_HEADER.size)
        if len(raw) < _LOCAL_HEADER.size or raw[:4] != _LOCAL_SIGNATURE:
            problems.append(f"{info.filename!r}: corrupt archive, no local header at offset {info.header_offset}")
            continue
        fields = _LOCAL_HEADER.unpack(raw)
        name_len, extra_len = fields[9], fields[10]
        local_name = archive.read(name_len)
        encoding = "utf-8" if fields[2] & 0x800 else "cp437"
        if local_name.decode(encoding, "replace") != info.orig_filename:
            problems.append(f"{info.filename!r}: local header names another file ({local_name[:80]!r})")
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        stop = start + info.compress_size
        if stop > end:
            problems.append(f"{info.filename!r}: truncated archive, data run past its end")
        spans.append((info.header_offset, stop, info.filename))
    spans.sort()
    for (_, stop, name), (next_start, _, next_name) in zip(spans, spans[1:], strict=False):
        if stop > next_start:
            problems.append(f"{next_name!r}: zip bomb, data overlaps member {name!r}")
    return problems


def check_archive(zf: zipfile.ZipFile, archive: BinaryIO, limits: XdmLimits) -> list[str]:
    """Every problem of the archive's headers (empty when it may be extracted); nothing is inflated."""
    infos = zf.infolist()
    problems: list[str] = []
    if len(infos) > limits.max_members:
        problems.append(f"too many members: {len(infos)} (limit {limits.max_members})")
        return problems  # judging each of a million members would itself be the denial of service
    seen: dict[str, str] = {}
    total = 0
    for info in infos:
        problems.extend(_member_problems(info, limits))
        key = normalise_name(info.filename).casefold()
        if key in seen:
            problems.append(f"{info.filename!r}: duplicate name (same file as {seen[key]!r})")
        else:
            seen[key] = info.filename
        total += info.file_size
    if total > limits.max_total_bytes:
        problems.append(f"zip bomb: members inflate to {total} bytes in all (limit {limits.max_total_bytes})")
    problems.extend(_overlap_problems(archive, infos))
    return problems


def copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: BinaryIO, *, budget: int, limit: int) -> CopyResult:
    """Inflate one member into ``out``, hashing it, counting what really comes out.

    Stops with :class:`MemberTooLarge` past ``limit`` bytes for this member or past ``budget`` (what
    remains of the archive's total) — the header's size is not trusted. ``zipfile`` raises
    ``BadZipFile`` on a CRC mismatch at the end of the member.
    """
    digest = hashlib.sha1()  # noqa: S324 - XDS hash is SHA-1 (ITI TF-3 4.2.3.2.14)
    size = 0
    head = b""
    cap = min(limit, budget)
    with zf.open(info) as member:
        while chunk := member.read(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise MemberTooLarge(f"{info.filename!r}: inflates beyond {cap} bytes")
            if len(head) < 132:
                head += chunk[: 132 - len(head)]
            digest.update(chunk)
            out.write(chunk)
    return CopyResult(size, digest.hexdigest().upper(), head)


def is_dicom_head(head: bytes) -> bool:
    """A DICOM Part 10 file: 128-byte preamble then ``DICM``."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def member_paths(names: Iterable[str]) -> dict[str, str]:
    """Normalised, case-folded name → the archive's own name (to resolve METADATA URIs)."""
    return {normalise_name(n).casefold(): n for n in names}

