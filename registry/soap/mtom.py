"""MTOM/XOP packaging (W3C SOAP MTOM, XOP 1.0) of SOAP 1.2 messages over HTTP.

IHE ITI TF-2x Appendix V: ITI-41 requests and ITI-43 responses carry document bytes as MIME parts
of a ``multipart/related; type="application/xop+xml"`` message, each referenced from the envelope by
``<xop:Include href="cid:…"/>``. This module splits such a message into its root (the envelope) and
its attachments, and builds one.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from urllib.parse import unquote

__all__ = [
    "MimePart",
    "MultipartRejected",
    "build_mtom",
    "cid_of",
    "parse_content_type",
    "parse_multipart_related",
]

_MAX_PARTS = 1000


class MultipartRejected(ValueError):
    """The multipart body cannot be split as declared."""


@dataclass(frozen=True, slots=True)
class MimePart:
    """One MIME part: lower-cased header names, decoded body."""

    headers: dict[str, str]
    body: bytes

    @property
    def content_id(self) -> str | None:
        """``Content-ID`` without its angle brackets."""
        value = self.headers.get("content-id")
        return value.strip().strip("<>") if value else None

    @property
    def content_type(self) -> str:
        """The part's media type (lower case), ``application/octet-stream`` if undeclared."""
        return parse_content_type(self.headers.get("content-type", "application/octet-stream"))[0]


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a ``Content-Type`` value into the media type (lower case) and its parameters."""
    message = Message()
    message["content-type"] = value
    params = message.get_params() or []
    media_type = message.get_content_type()
    return media_type, {k.lower(): str(v) for k, v in params[1:]}


def parse_multipart_related(body: bytes, boundary: str) -> list[MimePart]:
    """Split a ``multipart/related`` body (RFC 2046 §5.1, RFC 2387) into parts.

    Delimiters are CRLF-prefixed as the RFC says; bare LF line ends are tolerated because some SOAP
    stacks emit them.
    """
    if not boundary or len(boundary) > 200:
        raise MultipartRejected("missing or oversized boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    newline = b"\r\n" if b"\r\n" + delimiter in body or body.startswith(delimiter + b"\r\n") else b"\n"
    start = body.find(delimiter)
    if start < 0:
        raise MultipartRejected("boundary not found in the body")
    parts: list[MimePart] = []
    position = start + len(delimiter)
    while True:
        if body.startswith(b"--", position):
            return parts
        line_end = body.find(b"\n", position)
        if line_end < 0:
            raise MultipartRejected("truncated multipart body")
        content_start = line_end + 1
        end = body.find(newline + delimiter, content_start)
        if end < 0:
            raise MultipartRejected("unterminated part: closing boundary missing")
        parts.append(_parse_part(body[content_start:end], newline))
        if len(parts) > _MAX_PARTS:
            raise MultipartRejected(f"more than {_MAX_PARTS} MIME parts")
        position = end + len(newline) + len(delimiter)


def _parse_part(raw: bytes, newline: bytes) -> MimePart:
    separator = newline + newline
    if raw.startswith(newline):
        header_block, content = b"", raw[len(newline) :]
    else:
        header_block, found, content = raw.partition(separator)
        if not found:
            raise MultipartRejected("MIME part without a blank line after its headers")
    headers: dict[str, str] = {}
    for line in header_block.decode("latin-1").splitlines():
        if line[:1] in (" ", "\t") and headers:  # folded header continuation (RFC 5322 §2.2.3)
            last = next(reversed(headers))
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartRejected(f"malformed MIME header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    encoding = headers.get("content-transfer-encoding", "binary").lower()
    if encoding == "base64":
        try:
            content = base64.b64decode(content, validate=False)
        except binascii.Error as exc:
            raise MultipartRejected("bad base64 in a MIME part") from exc
    elif encoding == "quoted-printable":
        content = quopri.decodestring(content)
    elif encoding not in ("binary", "8bit", "7bit"):
        raise MultipartRejected(f"unsupported Content-Transfer-Encoding {encoding!r}")
    return MimePart(headers, content)


def cid_of(href: str) -> str:
    """The Content-ID named by a ``cid:`` URL (RFC 2392: URL-encoded, no angle brackets)."""
    if not href.lower().startswith("cid:"):
        raise MultipartRejected(f"xop:Include href {href!r} is not a cid: URL")
    return unquote(href[4:])


def build_mtom(envelope: bytes, attachments: Sequence[tuple[str, str, bytes]], action: str) -> tuple[bytes, str]:
    """Package ``envelope`` and ``(content_id, media_type, bytes)`` attachments as an MTOM message.

    Returns
    -------
    tuple[bytes, str]
        The body and its ``Content-Type`` header value.
    """
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root_id = f"root.{uuid.uuid4().hex}@registry"
    chunks = [
        f"--{boundary}\r\n"
        'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
        "Content-Transfer-Encoding: binary\r\n"
        f"Content-ID: <{root_id}>\r\n\r\n".encode(),
        envelope,
    ]
    for content_id, media_type, data in attachments:
        chunks.append(
            f"\r\n--{boundary}\r\nContent-Type: {media_type}\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: <{content_id}>\r\n\r\n".encode()
        )
        chunks.append(data)
    chunks.append(f"\r\n--{boundary}--\r\n".encode())
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; start="<{root_id}>"; '
        f'start-info="application/soap+xml"; action="{action}"'
    )
    return b"".join(chunks), content_type
