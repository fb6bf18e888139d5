"""SOAP 1.2 envelopes with WS-Addressing and WS-Security headers, and reading replies.

ITI TF-2 Appendix V: SOAP 1.2, WS-Addressing 1.0 (``wsa:MessageID``, ``wsa:To``, ``wsa:Action``
marked ``mustUnderstand``), the VIHF assertion in ``wsse:Security`` (DMP). Replies are checked for
SOAP faults (``soap:Sender`` → the request is wrong: permanent; ``soap:Receiver`` → the service
failed: transient) and for ``RegistryResponse`` failures (ITI TF-3 4.2.4).
"""

from __future__ import annotations

import uuid

from lxml import etree

from drimbox.publish.errors import RegistryError, RegistryErrorDetail, XdsTransportError
from drimbox.publish.xds.vocabulary import NS, ResponseStatus

__all__ = ["body_child", "build_envelope", "check_fault", "registry_response_errors", "require_success"]

_SOAP = f"{{{NS['soap']}}}"
_WSA = f"{{{NS['wsa']}}}"
_RS = f"{{{NS['rs']}}}"


def build_envelope(action: str, to: str, body: etree._Element, *, assertion: etree._Element | None = None,
                   message_id: str | None = None) -> etree._Element:
    """``soap:Envelope`` with the WS-Addressing header, the assertion (if any) and ``body``."""
    envelope = etree.Element(_SOAP + "Envelope", nsmap={"soap": NS["soap"], "wsa": NS["wsa"]})
    header = etree.SubElement(envelope, _SOAP + "Header")
    etree.SubElement(header, _WSA + "MessageID").text = message_id or f"urn:uuid:{uuid.uuid4()}"
    etree.SubElement(header, _WSA + "To").text = to
    action_el = etree.SubElement(header, _WSA + "Action")
    action_el.set(_SOAP + "mustUnderstand", "true")
    action_el.text = action
    if assertion is not None:
        security = etree.SubElement(header, f"{{{NS['wsse']}}}Security", nsmap={"wsse": NS["wsse"]})
        security.append(assertion)
    etree.SubElement(envelope, _SOAP + "Body").append(body)
    return envelope


def body_child(envelope: etree._Element) -> etree._Element:
    """The first element of ``soap:Body``."""
    body = envelope.find(_SOAP + "Body")
    if body is None or len(body) == 0:
        raise XdsTransportError("SOAP reply without a body")
    return body[0]


def check_fault(envelope: etree._Element) -> None:
    """Raise if the reply is a SOAP fault (SOAP 1.2 Part 1, 5.4)."""
    fault = envelope.find(f"{_SOAP}Body/{_SOAP}Fault")
    if fault is None:
        return
    code = fault.findtext(f"{_SOAP}Code/{_SOAP}Value", default="").strip()
    subcode = fault.findtext(f"{_SOAP}Code/{_SOAP}Subcode/{_SOAP}Value", default="").strip()
    reason = fault.findtext(f"{_SOAP}Reason/{_SOAP}Text", default="").strip()
    local = code.rpartition(":")[2]
    detail = RegistryErrorDetail(code=subcode or local or "Fault", context=reason)
    raise RegistryError(f"SOAP fault {local}{f' ({subcode})' if subcode else ''}: {reason}", (detail,),
                        transient=local != "Sender")


def registry_response_errors(response: etree._Element) -> tuple[RegistryErrorDetail, ...]:
    """The ``rs:RegistryError`` entries under a response element."""
    return tuple(
        RegistryErrorDetail(
            code=error.get("errorCode", ""),
            context=error.get("codeContext", ""),
            severity=error.get("severity", ""),
            location=error.get("location", ""),
        )
        for error in response.iterfind(f".//{_RS}RegistryError")
    )


def require_success(response: etree._Element, what: str) -> tuple[RegistryErrorDetail, ...]:
    """Raise :class:`RegistryError` unless ``status`` is Success or PartialSuccess; return the warnings."""
    status = response.get("status", "")
    errors = registry_response_errors(response)
    if status in (ResponseStatus.SUCCESS, ResponseStatus.PARTIAL_SUCCESS):
        return errors
    if status == ResponseStatus.FAILURE:
        summary = "; ".join(f"{e.code}: {e.context}" for e in errors) or "no error given"
        raise RegistryError(f"{what} refused: {summary}", errors)
    raise XdsTransportError(f"{what}: unexpected response status {status!r}")
