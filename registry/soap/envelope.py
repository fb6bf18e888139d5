"""Reading a SOAP 1.2 request: media type, MTOM, envelope structure, WS-Addressing headers.

Everything wrong with the message itself becomes a :class:`~registry.errors.SoapFault` with the code
SOAP 1.2 Part 1 §5.4.6 prescribes (``VersionMismatch``, ``MustUnderstand``, ``Sender``) and a
WS-Addressing subcode where one applies (WS-Addressing 1.0 SOAP Binding §6.4).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from registry.errors import SoapFault
from registry.soap.mtom import MultipartRejected, cid_of, parse_content_type, parse_multipart_related
from registry.soap.xmlparse import XmlRejected, parse_xml, text_of
from registry.xds.ns import SOAP_ENV, WSA, WSSE, XOP

__all__ = ["SoapRequest", "parse_soap_request"]

_SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_UNDERSTOOD_HEADER_NAMESPACES = frozenset({WSA, WSSE})


@dataclass(frozen=True)
class SoapRequest:
    """A parsed SOAP 1.2 request.

    Attributes
    ----------
    envelope
        The ``env:Envelope`` element.
    header
        ``env:Header`` or ``None``.
    payload
        The single child of ``env:Body`` (the transaction's request element).
    action
        ``wsa:Action``.
    message_id
        ``wsa:MessageID`` (``None`` when absent; the response then carries no ``RelatesTo``).
    mtom
        Whether the request came as MTOM (``multipart/related``); the response follows suit.
    attachments
        MIME parts by Content-ID (empty for a plain ``application/soap+xml`` request).
    """

    envelope: etree._Element
    header: etree._Element | None
    payload: etree._Element
    action: str
    message_id: str | None
    mtom: bool
    attachments: Mapping[str, bytes] = field(default_factory=dict)

    def binary(self, element: etree._Element) -> bytes:
        """The bytes an ``xs:base64Binary`` element carries: its ``xop:Include`` part, or inline base64.

        Raises
        ------
        SoapFault
            ``Sender``: the Include names no part, or the inline text is not base64.
        """
        includes = element.findall(f"{{{XOP}}}Include")
        if len(includes) > 1:
            raise SoapFault("Sender", f"{_describe(element)} has more than one xop:Include")
        if includes:
            href = includes[0].get("href", "")
            try:
                content_id = cid_of(href)
            except MultipartRejected as exc:
                raise SoapFault("Sender", str(exc)) from exc
            if content_id not in self.attachments:
                raise SoapFault("Sender", f"xop:Include href {href!r} names no MIME part of the message")
            return self.attachments[content_id]
        try:
            return base64.b64decode("".join((element.text or "").split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SoapFault("Sender", f"{_describe(element)}: content is neither xop:Include nor base64") from exc


def _describe(element: etree._Element) -> str:
    name = etree.QName(element).localname
    ident = element.get("id")
    return f"{name} id={ident!r}" if ident else name


def parse_soap_request(content_type: str | None, body: bytes) -> SoapRequest:
    """Parse an HTTP request body as SOAP 1.2, plain or MTOM.

    Raises
    ------
    SoapFault
        HTTP 415 for a media type other than ``application/soap+xml`` or MTOM ``multipart/related``;
        ``VersionMismatch`` for a SOAP 1.1 envelope; ``MustUnderstand`` for a mandatory header the
        registry does not process; ``Sender`` for everything else malformed.
    """
    if not content_type:
        raise SoapFault("Sender", "missing Content-Type", http_status=415)
    media_type, params = parse_content_type(content_type)
    attachments: dict[str, bytes] = {}
    if media_type == "multipart/related":
        envelope_bytes, attachments = _split_mtom(body, params)
        mtom = True
    elif media_type == "application/soap+xml":
        envelope_bytes, mtom = body, False
    elif media_type == "text/xml":
        raise SoapFault(
            "VersionMismatch",
            "text/xml is the SOAP 1.1 media type; XDS.b uses SOAP 1.2 (application/soap+xml)",
            http_status=415,
        )
    else:
        raise SoapFault(
            "Sender",
            f"unsupported media type {media_type!r}: expected application/soap+xml or "
            'multipart/related; type="application/xop+xml"',
            http_status=415,
        )
    try:
        envelope = parse_xml(envelope_bytes)
    except XmlRejected as exc:
        raise SoapFault("Sender", f"SOAP envelope: {exc}") from exc
    return _read_envelope(envelope, mtom, attachments)


def _split_mtom(body: bytes, params: Mapping[str, str]) -> tuple[bytes, dict[str, bytes]]:
    root_type = params.get("type", "").lower()
    if root_type not in ("application/xop+xml", "application/soap+xml"):
        raise SoapFault(
            "Sender", f'multipart/related type={root_type!r}: expected "application/xop+xml" (MTOM)', http_status=415
        )
    try:
        parts = parse_multipart_related(body, params.get("boundary", ""))
    except MultipartRejected as exc:
        raise SoapFault("Sender", f"MTOM package: {exc}") from exc
    if not parts:
        raise SoapFault("Sender", "MTOM package: no MIME part")
    start = params.get("start", "").strip().strip("<>")
    root = next((p for p in parts if start and p.content_id == start), None) if start else parts[0]
    if root is None:
        raise SoapFault("Sender", f"MTOM package: no part has the start Content-ID <{start}>")
    if root.content_type not in ("application/xop+xml", "application/soap+xml"):
        raise SoapFault("Sender", f"MTOM root part has type {root.content_type!r}, expected application/xop+xml")
    attachments = {p.content_id: p.body for p in parts if p is not root and p.content_id}
    return root.body, attachments


def _read_envelope(envelope: etree._Element, mtom: bool, attachments: dict[str, bytes]) -> SoapRequest:
    qname = etree.QName(envelope)
    if qname.localname != "Envelope" or qname.namespace not in (SOAP_ENV, _SOAP11_ENV):
        raise SoapFault("Sender", f"root element is {qname.text}, not a SOAP 1.2 env:Envelope")
    if qname.namespace == _SOAP11_ENV:
        raise SoapFault("VersionMismatch", "SOAP 1.1 envelope; XDS.b uses SOAP 1.2")
    children = [c for c in envelope if isinstance(c.tag, str)]
    header = None
    if children and children[0].tag == f"{{{SOAP_ENV}}}Header":
        header = children.pop(0)
    if len(children) != 1 or children[0].tag != f"{{{SOAP_ENV}}}Body":
        raise SoapFault("Sender", "the envelope must hold an optional env:Header then exactly one env:Body")
    payload_elements = [c for c in children[0] if isinstance(c.tag, str)]
    if len(payload_elements) != 1:
        raise SoapFault("Sender", f"env:Body must hold exactly one element, found {len(payload_elements)}")
    if header is None:
        raise SoapFault(
            "Sender", "no env:Header: wsa:Action is required", subcode="wsa:MessageAddressingHeaderRequired"
        )
    _check_must_understand(header)
    action = _single_header(header, "Action")
    if not action:
        raise SoapFault("Sender", "wsa:Action header is required", subcode="wsa:MessageAddressingHeaderRequired")
    message_id = _single_header(header, "MessageID") or None
    return SoapRequest(envelope, header, payload_elements[0], action, message_id, mtom, attachments)


def _single_header(header: etree._Element, localname: str) -> str:
    found = header.findall(f"{{{WSA}}}{localname}")
    if len(found) > 1:
        raise SoapFault("Sender", f"more than one wsa:{localname} header", subcode="wsa:InvalidAddressingHeader")
    return text_of(found[0]) if found else ""


def _check_must_understand(header: etree._Element) -> None:
    for block in header:
        if not isinstance(block.tag, str):
            continue
        flag = block.get(f"{{{SOAP_ENV}}}mustUnderstand", "false").strip().lower()
        if flag in ("true", "1") and etree.QName(block).namespace not in _UNDERSTOOD_HEADER_NAMESPACES:
            raise SoapFault("MustUnderstand", f"header {etree.QName(block).text} is not understood by the registry")
