"""The kit's XDS.b client: ITI-18 stored queries and ITI-41 submissions to the registry, each
exchange recorded as evidence, the answers returned raw for the checks to judge.

Requests are built with the project's generic SOAP/ebRIM/VIHF builders (WS-Addressing envelope,
MTOM, the signed VIHF 3.0 assertion) — the kit signs with the ``tls`` client certificate of the run
(a certificate of the network's CA, as an organisation certificate) — but nothing of the node's
publication logic judges the registry's replies: the families read the ebRIM themselves.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from lxml import etree

from drimbox.certify.model import ScenarioFailed
from drimbox.certify.wire import Reply, format_exchange
from drimbox.publish.vihf import VihfIssuer, VihfProfile, VihfSubject
from drimbox.publish.xds.client import iti41_envelope
from drimbox.publish.xds.mtom import encode_mtom, parse_soap_response
from drimbox.publish.xds.requests import DocumentPart, FindDocumentsQuery, find_documents_request
from drimbox.publish.xds.rim import Code
from drimbox.publish.xds.signing import Signer
from drimbox.publish.xds.soap import body_child, build_envelope
from drimbox.publish.xds.vocabulary import ACTION, NS
from drimbox.reports import Practitioner

if TYPE_CHECKING:
    from drimbox.certify.probe import Probe

__all__ = ["CERT_STRUCTURE_ID", "RIM", "RS", "RegistryAnswer", "XdsWire", "patient_cx"]

RIM = f"{{{NS['rim']}}}"
RS = f"{{{NS['rs']}}}"
CERT_STRUCTURE_ID = "1CERTIFY0001"
"""The IdNatStruct the kit's assertions and test submissions name (a test structure)."""
_PROFESSION = Code("10", "1.2.250.1.71.1.2.7", "Médecin")
_SPECIALTY = Code("SM44", "1.2.250.1.71.4.2.5", "Radiologie")


def patient_cx(ins: str, oid: str) -> str:
    """The INS in the DMP's CX form (``INS^^^&OID&ISO^NH``)."""
    return f"{ins}^^^&{oid}&ISO^NH"


@dataclass(slots=True)
class RegistryAnswer:
    """A registry's reply: its status and errors (code, context), and the body element."""

    status: str
    errors: list[tuple[str, str]] = field(default_factory=list)
    body: etree._Element | None = None

    @property
    def success(self) -> bool:
        return self.status.endswith(":Success") or self.status.endswith(":PartialSuccess")


class XdsWire:
    """ITI-18 and ITI-41 for one probe (the run's certificate signs; the token's RPPS acts)."""

    def __init__(self, probe: Probe, rpps: str) -> None:
        target = probe.target
        if not (target.client_cert and target.client_key):
            raise ScenarioFailed("signing VIHF assertions needs a certificate of the network's CA (--client-cert)")
        self.probe = probe
        self.signer = Signer.from_files(target.client_cert, target.client_key)
        self.issuer = VihfIssuer(VihfProfile(structure_id=CERT_STRUCTURE_ID,
                                             activity_sector=Code("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
                                             lps_id="drimbox-certify", lps_name="drimbox certify", lps_version="1",
                                             lps_homologation_id="CERTIFY"), self.signer)
        self.practitioner = Practitioner(f"8{rpps}", "CERTIFICATION", "Kit")

    def _assertion(self, patient: str, structure_id: str | None = None) -> etree._Element:
        return self.issuer.issue(VihfSubject(self.practitioner, _PROFESSION, _SPECIALTY, patient,
                                             structure_id=structure_id or CERT_STRUCTURE_ID))

    def _post(self, url: str, content_type: str, body: bytes, title: str) -> RegistryAnswer:
        headers = {"Content-Type": content_type}
        ca = self.probe.target.ca_file
        verify = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
        with httpx.Client(verify=verify, timeout=60, trust_env=False) as client:
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                self.probe.evidence("http", title, format_exchange("POST", url, headers, body, None, repr(exc)))
                raise ScenarioFailed(f"{title}: {url} unreachable ({exc})") from exc
        reply = Reply(response.status_code, response.headers, response.content, response.elapsed.total_seconds(),
                      url)
        self.probe.evidence("http", title, format_exchange("POST", url, headers, body, reply))
        try:
            envelope, _ = parse_soap_response(reply.content_type, reply.content)
        except Exception as exc:  # not SOAP at all: the finding says so
            raise ScenarioFailed(f"{title}: HTTP {reply.status}, not a SOAP reply ({exc})") from exc
        element = body_child(envelope)
        errors = [(str(e.get("errorCode", "")), str(e.get("codeContext", "")))
                  for e in element.iter(f"{RS}RegistryError")]
        fault = envelope.find(f"{{{NS['soap']}}}Body/{{{NS['soap']}}}Fault")
        if fault is not None:
            return RegistryAnswer("SOAP Fault", [("SOAP Fault", " ".join(fault.itertext())[:300])], element)
        return RegistryAnswer(str(element.get("status", "")), errors, element)

    def find_documents(self, url: str, patient: str) -> RegistryAnswer:
        """ITI-18 FindDocuments (approved entries of ``patient``, LeafClass)."""
        request = find_documents_request(FindDocumentsQuery(patient_id=patient))
        envelope = build_envelope(ACTION.ITI18, url, request, assertion=self._assertion(patient))
        body = bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))
        return self._post(url, f'application/soap+xml; charset=UTF-8; action="{ACTION.ITI18}"', body,
                          "ITI-18 FindDocuments")

    def provide_and_register(self, url: str, metadata: etree._Element, documents: list[DocumentPart],
                             patient: str, title: str, *, structure_id: str | None = None) -> RegistryAnswer:
        """ITI-41 (MTOM/XOP) of ``metadata`` and ``documents``, the assertion for ``structure_id``."""
        envelope, attachments = iti41_envelope(url, metadata, documents,
                                               assertion=self._assertion(patient, structure_id))
        message = encode_mtom(bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")), attachments,
                              ACTION.ITI41)
        return self._post(url, message.content_type, message.body, title)
