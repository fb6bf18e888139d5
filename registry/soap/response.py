"""Writing SOAP 1.2 responses: the envelope, WS-Addressing reply headers, faults, MTOM or not."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from lxml import etree
from starlette.responses import Response

from registry.errors import SoapFault
from registry.soap.mtom import build_mtom
from registry.xds.ns import SOAP_ENV, WSA

__all__ = ["FAULT_ACTION", "fault_response", "soap_response"]

FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
_WSSE_FAULTS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_SUBCODE_NAMESPACES = {"wsa": WSA, "wsse": _WSSE_FAULTS}


def _envelope(action: str, relates_to: str | None, body_child: etree._Element) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "wsa": WSA})
    header = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action", {f"{{{SOAP_ENV}}}mustUnderstand": "true"}).text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
    etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body").append(body_child)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def soap_response(
    action: str,
    relates_to: str | None,
    body_child: etree._Element,
    *,
    mtom: bool,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> Response:
    """A 200 response carrying ``body_child``; MTOM when asked or when there are attachments."""
    envelope = _envelope(action, relates_to, body_child)
    if mtom or attachments:
        content, content_type = build_mtom(envelope, attachments, action)
        return Response(content, media_type=content_type)
    return Response(envelope, media_type=f'application/soap+xml; charset=UTF-8; action="{action}"')


def fault_response(fault: SoapFault, relates_to: str | None) -> Response:
    """The SOAP 1.2 Fault for ``fault`` (SOAP 1.2 Part 1 §5.4), always plain ``application/soap+xml``."""
    nsmap = {"soap": SOAP_ENV, **_SUBCODE_NAMESPACES}
    element = etree.Element(f"{{{SOAP_ENV}}}Fault", nsmap=nsmap)
    code = etree.SubElement(element, f"{{{SOAP_ENV}}}Code")
    etree.SubElement(code, f"{{{SOAP_ENV}}}Value").text = f"soap:{fault.code}"
    if fault.subcode:
        subcode = etree.SubElement(code, f"{{{SOAP_ENV}}}Subcode")
        etree.SubElement(subcode, f"{{{SOAP_ENV}}}Value").text = fault.subcode
    reason = etree.SubElement(element, f"{{{SOAP_ENV}}}Reason")
    text = etree.SubElement(reason, f"{{{SOAP_ENV}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = fault.reason
    envelope = _envelope(FAULT_ACTION, relates_to, element)
    return Response(
        envelope,
        status_code=fault.http_status,
        media_type=f'application/soap+xml; charset=UTF-8; action="{FAULT_ACTION}"',
    )
