"""MTOM/XOP packaging of SOAP 1.2 messages (ITI TF-2 Appendix V.3.6; W3C XOP 1.0, SOAP MTOM).

ITI-41 and ITI-43 carry documents as binary MIME parts referenced from the envelope by
``xop:Include href="cid:…"``; the root part is the envelope as ``application/xop+xml``. Parts are
kept as bytes end to end (a KOS is binary DICOM: no transfer encoding, no line-end rewriting).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from lxml import etree

from drimbox.publish.errors import XdsTransportError
from drimbox.publish.xds.vocabulary import NS

__all__ = ["Attachment", "MtomMessage", "cid_href", "encode_mtom", "parse_soap_response", "resolve_include"]

_XOP_INCLUDE = f"{{{NS['xop']}}}Include"


@dataclass(frozen=True, slots=True)
class Attachment:
    """One binary MIME part: its Content-ID (without angle brackets), type and bytes."""

    content_id: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MtomMessage:
    """A serialised MTOM request: HTTP ``Content-Type`` header and body."""

    content_type: str
    body: bytes


def cid_href(content_id: str) -> str:
    """The ``cid:`` URL of a Content-ID (RFC 2392: %-encoded)."""
    return "cid:" + quote(content_id, safe="@.-_")


def encode_mtom(envelope: bytes, attachments: Sequence[Attachment], action: str) -> MtomMessage:
    """Package an envelope (already holding ``xop:Include`` elements) and its attachments."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root_id = f"root.message@{uuid.uuid4().hex}.drimbox"
    crlf = b"\r\n"
    parts = [
        b"--" + boundary.encode() + crlf
        + b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"' + crlf
        + b"Content-Transfer-Encoding: binary" + crlf
        + b"Content-ID: <" + root_id.encode() + b">" + crlf + crlf
        + envelope + crlf
    ]
    for att in attachments:
        parts.append(
            b"--" + boundary.encode() + crlf
            + b"Content-Type: " + att.content_type.encode() + crlf
            + b"Content-Transfer-Encoding: binary" + crlf
            + b"Content-ID: <" + att.content_id.encode() + b">" + crlf + crlf
            + att.data + crlf
        )
    body = b"".join(parts) + b"--" + boundary.encode() + b"--" + crlf
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; start="<{root_id}>"; '
        f'start-info="application/soap+xml"; action="{action}"'
    )
    return MtomMessage(content_type, body)


_PARAM = re.compile(r';\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]+)')


def _params(content_type: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2).strip('"') for m in _PARAM.finditer(content_type)}


def _split_parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # close delimiter
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, data = chunk.partition(b"\n\n")
        headers = {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        # The CRLF before the next delimiter belongs to the delimiter (RFC 2046 5.1.1).
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        parts.append((headers, data))
    return parts


def parse_soap_response(content_type: str, body: bytes) -> tuple[etree._Element, dict[str, bytes]]:
    """The SOAP envelope of a reply, plain or MTOM, with the MTOM parts by Content-ID.

    ``xop:Include`` elements are left in place; :func:`resolve_include` reads one.

    Raises
    ------
    XdsTransportError
        When the body is not a SOAP envelope (or a multipart without one).
    """
    attachments: dict[str, bytes] = {}
    xml = body
    if content_type.lower().startswith("multipart/"):
        params = _params(content_type)
        boundary = params.get("boundary")
        if not boundary:
            raise XdsTransportError("multipart reply without a boundary")
        parts = _split_parts(body, boundary)
        if not parts:
            raise XdsTransportError("empty multipart reply")
        start = params.get("start", "").strip("<>")
        root_index = 0
        for index, (headers, _) in enumerate(parts):
            if start and headers.get("content-id", "").strip("<>") == start:
                root_index = index
        xml = parts[root_index][1]
        for index, (headers, data) in enumerate(parts):
            if index != root_index:
                attachments[unquote(headers.get("content-id", "").strip("<>"))] = data
    try:
        envelope = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True,
                                                                huge_tree=True))
    except etree.XMLSyntaxError as exc:
        raise XdsTransportError(f"reply is not XML: {exc}") from exc
    if envelope.tag != f"{{{NS['soap']}}}Envelope":
        raise XdsTransportError(f"reply is not a SOAP 1.2 envelope ({envelope.tag})")
    return envelope, attachments


def resolve_include(element: etree._Element, attachments: dict[str, bytes]) -> bytes:
    """The bytes an element carries: inline base64 text, or the MTOM part its ``xop:Include`` names."""
    include = element.find(_XOP_INCLUDE)
    if include is None:
        return base64.b64decode(element.text or "")
    href = include.get("href", "")
    cid = unquote(href[4:]) if href.startswith("cid:") else href
    try:
        return attachments[cid]
    except KeyError:
        raise XdsTransportError(f"reply references a missing MIME part {href}") from None
