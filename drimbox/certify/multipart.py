"""A strict reader of ``multipart/related`` responses (RFC 2046 / RFC 2387, PS3.18 §8.7.3.3).

The kit's own, deliberately pedantic: it reports every deviation (missing boundary parameter,
delimiter not on its own line, part without ``Content-Type``, missing close delimiter) instead of
guessing, because well-formedness is what it certifies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message

__all__ = ["Multipart", "Part", "media_params", "parse_multipart"]


@dataclass(frozen=True, slots=True)
class Part:
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Multipart:
    parts: list[Part] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def media_params(content_type: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` (lower case) and its parameters (names lower case, quotes removed)."""
    message = Message()
    message["content-type"] = content_type
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


def _headers(block: bytes, index: int, problems: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            problems.append(f"part {index}: header line without ':' ({line[:60]!r})")
            continue
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return headers


def parse_multipart(content_type: str, body: bytes) -> Multipart:
    """Split ``body``; ``problems`` lists what is not well-formed (empty when it is)."""
    out = Multipart()
    media, params = media_params(content_type)
    if media != "multipart/related":
        out.problems.append(f"Content-Type is {media!r}, not multipart/related")
        return out
    boundary = params.get("boundary")
    if not boundary:
        out.problems.append("Content-Type has no boundary parameter")
        return out
    if "type" not in params:
        out.problems.append("Content-Type has no type parameter (RFC 2387 requires it)")
    delimiter = b"--" + boundary.encode("latin-1")
    if not body.startswith(delimiter):
        first = body.find(b"\r\n" + delimiter)
        if first < 0:
            out.problems.append("the boundary never appears in the body")
            return out
        body = body[first + 2:]
    close = body.rfind(b"\r\n" + delimiter + b"--")
    if close < 0:
        out.problems.append("no close delimiter (--boundary--) at the end of the body")
        close = len(body)
    chunks = body[:close].split(b"\r\n" + delimiter)
    chunks[0] = chunks[0][len(delimiter):]
    for index, chunk in enumerate(chunks, 1):
        if not chunk.startswith(b"\r\n"):
            out.problems.append(f"part {index}: delimiter not followed by CRLF")
            continue
        head, sep, content = chunk[2:].partition(b"\r\n\r\n")
        if not sep:
            out.problems.append(f"part {index}: no blank line between headers and body")
            continue
        headers = _headers(head, index, out.problems) if head else {}
        if "content-type" not in headers:
            out.problems.append(f"part {index}: no Content-Type header")
        out.parts.append(Part(headers, content))
    if not out.parts:
        out.problems.append("no part in the body")
    return out
