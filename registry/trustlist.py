"""The registry's signed trust list of nodes (F11), in the ANS ``ListeBlancheDRIM-M`` format.

The registry publishes the nodes of its network at ``GET /whitelist`` (unauthenticated, like the ANS
publication: the list is public and its integrity comes from its signature, not from the channel).
Nodes verify it with :func:`drimbox.trust.trustlist.verify_trust_list`.

Signature (built and computed by xmlsec, libxmlsec1 — no hand-rolled XML-DSig): enveloped, the last
child of the root, XAdES-BASELINE-B, exactly as the ANS list is signed:

* Reference ``URI=""`` with the **XPath Filter 2.0** transform ``subtract /descendant::ds:Signature``
  then exclusive c14n (the ANS's choice; nodes accept it or the plain enveloped transform);
* Reference to ``xades:SignedProperties`` (``SigningTime``, ``SigningCertificateV2`` with the SHA-512
  digest of the signer certificate — no ``IssuerSerialV2``, which BASELINE-B advises against —, and a
  ``DataObjectFormat`` ``text/xml`` for the document reference);
* ``KeyInfo/X509Data``: the signer certificate, then its CA certificates;
* rsa-sha256 for an RSA key, ecdsa-sha256 for an EC key.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import tomllib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter
from fastapi.responses import Response
from lxml import etree

__all__ = [
    "ListedNode",
    "TrustListPublisher",
    "build_trust_list",
    "load_nodes",
    "sign_trust_list",
    "trustlist_router",
]

ANS_NS = "https://github.com/ansforge/DRIM-M_DATA"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
FILTER2_NS = "http://www.w3.org/2002/06/xmldsig-filter2"
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
_SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
_ANS = f"{{{ANS_NS}}}"
_DS = f"{{{DS_NS}}}"
_XADES = f"{{{XADES_NS}}}"


@dataclass(frozen=True, slots=True)
class ListedNode:
    """One node of the network, as a ``Domaine`` of the list."""

    identifiant: int
    db: str
    """Host of the node's network face (what peers' RetrieveURLs and mTLS certificates name)."""
    vi: str = ""
    denomination: str = ""
    dn_certificat_operateur: str = ""
    support_contact: str = ""
    date_maj: datetime | None = None


def _xs_datetime(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_trust_list(nodes: Sequence[ListedNode], *, generated_at: datetime) -> etree._Element:
    """The unsigned ``ListeBlancheDRIM-M`` element (format 1.0.0, namespace of the ANS sample)."""
    root = etree.Element(f"{_ANS}ListeBlancheDRIM-M", nsmap={None: ANS_NS})
    root.set("versionFormat", "1.0.0")
    etree.SubElement(root, f"{_ANS}DateDeGeneration").text = _xs_datetime(generated_at)
    domaines = etree.SubElement(root, f"{_ANS}ListeDomaines")
    for node in nodes:
        domaine = etree.SubElement(domaines, f"{_ANS}Domaine")
        fields = (
            ("Identifiant", str(node.identifiant)),
            ("db", node.db),
            ("vi", node.vi),
            ("Denomination", node.denomination),
            ("DNCertificatOperateur", node.dn_certificat_operateur),
            ("SupportContact", node.support_contact),
            ("DateMAJ", _xs_datetime(node.date_maj or generated_at)),
        )
        for name, text in fields:
            etree.SubElement(domaine, f"{_ANS}{name}").text = text
    return root


def sign_trust_list(
    root: etree._Element,
    *,
    key_pem: bytes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    signing_time: datetime,
) -> bytes:
    """Sign ``root`` in place (enveloped XAdES-BASELINE-B signature appended as its last child); return the XML."""
    private_key = serialization.load_pem_private_key(key_pem, password=None)
    if isinstance(private_key, rsa.RSAPrivateKey):
        method = xmlsec.constants.TransformRsaSha256
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        method = xmlsec.constants.TransformEcdsaSha256
    else:
        raise ValueError("the trust list signing key must be RSA or EC")
    sig_id = f"id-{uuid.uuid4().hex}"
    properties_id = f"xades-{sig_id}"
    document_ref_id = f"r-{sig_id}-1"

    signature = xmlsec.template.create(root, xmlsec.constants.TransformExclC14N, method, id=sig_id, ns="ds")
    root.append(signature)
    document_ref = xmlsec.template.add_reference(
        signature, xmlsec.constants.TransformSha256, id=document_ref_id, uri=""
    )
    xpath2 = xmlsec.template.add_transform(document_ref, xmlsec.constants.TransformXPath2)
    xpath = etree.SubElement(xpath2, f"{{{FILTER2_NS}}}XPath", nsmap={"dsig-filter2": FILTER2_NS})
    xpath.set("Filter", "subtract")
    xpath.text = "/descendant::ds:Signature"
    xmlsec.template.add_transform(document_ref, xmlsec.constants.TransformExclC14N)
    properties_ref = xmlsec.template.add_reference(
        signature, xmlsec.constants.TransformSha256, uri=f"#{properties_id}", type=SIGNED_PROPERTIES_TYPE
    )
    xmlsec.template.add_transform(properties_ref, xmlsec.constants.TransformExclC14N)

    x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    for cert in (certificate, *chain):
        node = etree.SubElement(x509_data, f"{_DS}X509Certificate")
        node.text = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")

    obj = etree.SubElement(signature, f"{_DS}Object")
    qualifying = etree.SubElement(obj, f"{_XADES}QualifyingProperties", nsmap={"xades": XADES_NS})
    qualifying.set("Target", f"#{sig_id}")
    signed_properties = etree.SubElement(qualifying, f"{_XADES}SignedProperties")
    signed_properties.set("Id", properties_id)
    signature_properties = etree.SubElement(signed_properties, f"{_XADES}SignedSignatureProperties")
    etree.SubElement(signature_properties, f"{_XADES}SigningTime").text = _xs_datetime(signing_time)
    cert_v2 = etree.SubElement(signature_properties, f"{_XADES}SigningCertificateV2")
    cert_digest = etree.SubElement(etree.SubElement(cert_v2, f"{_XADES}Cert"), f"{_XADES}CertDigest")
    etree.SubElement(cert_digest, f"{_DS}DigestMethod").set("Algorithm", _SHA512)
    digest = hashlib.sha512(certificate.public_bytes(serialization.Encoding.DER)).digest()
    etree.SubElement(cert_digest, f"{_DS}DigestValue").text = base64.b64encode(digest).decode("ascii")
    data_properties = etree.SubElement(signed_properties, f"{_XADES}SignedDataObjectProperties")
    data_format = etree.SubElement(data_properties, f"{_XADES}DataObjectFormat")
    data_format.set("ObjectReference", f"#{document_ref_id}")
    etree.SubElement(data_format, f"{_XADES}MimeType").text = "text/xml"

    ctx = xmlsec.SignatureContext()
    ctx.register_id(signed_properties, "Id")
    ctx.key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
    ctx.sign(signature)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def load_nodes(path: Path) -> list[ListedNode]:
    """Nodes from a TOML file of ``[[nodes]]`` tables (keys: the :class:`ListedNode` fields)."""
    with Path(path).open("rb") as fh:
        data: dict[str, Any] = tomllib.load(fh)
    nodes: list[ListedNode] = []
    for table in data.get("nodes", []):
        date_maj = table.get("date_maj")
        nodes.append(
            ListedNode(
                identifiant=int(table["identifiant"]),
                db=str(table["db"]),
                vi=str(table.get("vi", "")),
                denomination=str(table.get("denomination", "")),
                dn_certificat_operateur=str(table.get("dn_certificat_operateur", "")),
                support_contact=str(table.get("support_contact", "")),
                date_maj=date_maj if isinstance(date_maj, datetime) else None,
            )
        )
    return nodes


class TrustListPublisher:
    """Builds and signs the list of nodes; the signed bytes are reused for ``max_age_s``."""

    def __init__(
        self,
        nodes: Sequence[ListedNode] | Callable[[], Sequence[ListedNode]],
        *,
        key_pem: bytes,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        max_age_s: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._nodes = nodes
        self._key_pem = key_pem
        self.certificate = certificate
        self.chain = tuple(chain)
        self.max_age_s = max_age_s
        self.clock = clock
        self._cached: tuple[datetime, bytes] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_files(cls, *, nodes_file: Path, cert_file: Path, key_file: Path, max_age_s: float = 3600.0) -> Self:
        """``cert_file``: PEM with the signer certificate first, then its CA certificates."""
        certificates = x509.load_pem_x509_certificates(Path(cert_file).read_bytes())
        nodes = load_nodes(nodes_file)
        return cls(nodes, key_pem=Path(key_file).read_bytes(), certificate=certificates[0], chain=certificates[1:],
                   max_age_s=max_age_s)

    def nodes(self) -> Sequence[ListedNode]:
        return self._nodes() if callable(self._nodes) else self._nodes

    def signed_xml(self) -> bytes:
        """The current signed list (re-signed when older than ``max_age_s``)."""
        now = self.clock()
        with self._lock:
            if self._cached is not None and (now - self._cached[0]).total_seconds() < self.max_age_s:
                return self._cached[1]
            root = build_trust_list(self.nodes(), generated_at=now)
            xml = sign_trust_list(root, key_pem=self._key_pem, certificate=self.certificate, chain=self.chain,
                                  signing_time=now)
            self._cached = (now, xml)
            return xml


def trustlist_router(publisher: TrustListPublisher) -> APIRouter:
    """``GET /whitelist``: the signed list of nodes (``application/xml``)."""
    router = APIRouter(tags=["trust list"])

    @router.get("/whitelist", response_class=Response)
    def whitelist() -> Response:
        """The signed ``ListeBlancheDRIM-M`` of the network's nodes (public; integrity from the signature)."""
        return Response(
            content=publisher.signed_xml(),
            media_type="application/xml",
            headers={"Cache-Control": f"public, max-age={int(publisher.max_age_s)}"},
        )

    return router
