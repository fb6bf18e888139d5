"""The IHE DSG signature document of a submission (ITI TF-3 5.5, Document Digital Signature).

An *enveloping* XML signature (XAdES form) whose ``ds:Manifest`` lists each submitted document
by ``urn:oid:<uniqueId>`` with the SHA-256 digest of its bytes; the signed XAdES properties give the
signing time, the signer's certificate digest and the commitment type (``Source``, ASTM E1762
``1.2.840.10065.1.12.1.14``); a ``ds:SignatureProperty`` names the submission set it signs. The
document travels as its own document entry, tied to the submission set by a ``signs`` association.

Computed here with lxml's exclusive C14N and ``cryptography`` rather than libxmlsec: libxmlsec
digests a Manifest's references itself and would have to *read* ``urn:oid:…`` through process-wide
IO callbacks (which the Python binding cannot switch off), state that a registry verifying in the
same process also sets. Every reference of ``SignedInfo`` is a same-document ``#Id`` with exclusive
C14N, which is all this needs.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from lxml import etree

from drimbox.publish.xds.rim import Code
from drimbox.publish.xds.signing import Signer, verify_raw_signature
from drimbox.publish.xds.vocabulary import NS

__all__ = ["SOURCE_PURPOSE", "SignedDocument", "dsg_signature", "manifest_digests", "verify_dsg"]

_DS = f"{{{NS['ds']}}}"
_XADES = f"{{{NS['xades']}}}"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SOURCE_PURPOSE = Code("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source")
"""ASTM E1762 signature purpose "Source" (the author's signature), as in the ANS sample."""

SignedDocument = tuple[str, bytes]
"""(document uniqueId, document bytes)."""


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _c14n(element: etree._Element) -> bytes:
    return bytes(etree.tostring(element, method="c14n", exclusive=True, with_comments=False))


def _digest(parent: etree._Element, data: bytes) -> etree._Element:
    etree.SubElement(parent, _DS + "DigestMethod", Algorithm=_SHA256)
    value = etree.SubElement(parent, _DS + "DigestValue")
    value.text = _b64_sha256(data)
    return value


def _qualifying_properties(parent: etree._Element, signer: Signer, sig_id: str, props_id: str,
                           signed_at: datetime, purpose: Code) -> etree._Element:
    qualifying = etree.SubElement(parent, _XADES + "QualifyingProperties", Target=f"#{sig_id}",
                                  nsmap={"xades": NS["xades"]})
    signed = etree.SubElement(qualifying, _XADES + "SignedProperties", Id=props_id)
    signature_props = etree.SubElement(signed, _XADES + "SignedSignatureProperties")
    etree.SubElement(signature_props, _XADES + "SigningTime").text = signed_at.astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    cert = etree.SubElement(etree.SubElement(signature_props, _XADES + "SigningCertificateV2"), _XADES + "Cert")
    _digest(etree.SubElement(cert, _XADES + "CertDigest"), signer.certificate_der)
    policy = etree.SubElement(signature_props, _XADES + "SignaturePolicyIdentifier")
    etree.SubElement(policy, _XADES + "SignaturePolicyImplied")
    data_props = etree.SubElement(signed, _XADES + "SignedDataObjectProperties")
    commitment = etree.SubElement(data_props, _XADES + "CommitmentTypeIndication")
    type_id = etree.SubElement(commitment, _XADES + "CommitmentTypeId")
    etree.SubElement(type_id, _XADES + "Identifier", Qualifier="OIDAsURN").text = f"urn:oid:{purpose.code}"
    etree.SubElement(type_id, _XADES + "Description").text = purpose.display
    etree.SubElement(commitment, _XADES + "AllSignedDataObjects")
    return signed


def dsg_signature(
    signer: Signer,
    documents: Sequence[SignedDocument],
    submission_set_unique_id: str,
    *,
    signed_at: datetime | None = None,
    purpose: Code = SOURCE_PURPOSE,
) -> bytes:
    """The signature document (UTF-8 XML bytes) over ``documents`` for one submission set."""
    signed_at = signed_at or datetime.now(UTC)
    token = uuid.uuid4().hex
    sig_id, manifest_id, props_id, sig_props_id = (f"{p}-{token}" for p in ("sig", "manifest", "xades", "props"))
    signature = etree.Element(_DS + "Signature", nsmap={"ds": NS["ds"]}, Id=sig_id)
    signed_info = etree.SubElement(signature, _DS + "SignedInfo")
    etree.SubElement(signed_info, _DS + "CanonicalizationMethod", Algorithm=_EXC_C14N)
    etree.SubElement(signed_info, _DS + "SignatureMethod", Algorithm=signer.method_uri)
    signature_value = etree.SubElement(signature, _DS + "SignatureValue")
    key_info = etree.SubElement(signature, _DS + "KeyInfo")
    etree.SubElement(etree.SubElement(key_info, _DS + "X509Data"), _DS + "X509Certificate").text = (
        base64.b64encode(signer.certificate_der).decode("ascii"))
    signed_props = _qualifying_properties(etree.SubElement(signature, _DS + "Object"), signer, sig_id, props_id,
                                          signed_at, purpose)
    properties = etree.SubElement(etree.SubElement(signature, _DS + "Object"), _DS + "SignatureProperties",
                                  Id=sig_props_id)
    etree.SubElement(properties, _DS + "SignatureProperty", Id=f"purposeOfSignature-{token}",
                     Target=f"#{sig_id}").text = purpose.code
    etree.SubElement(properties, _DS + "SignatureProperty", Id=f"submissionSet-{token}",
                     Target=f"#{sig_id}").text = f"urn:oid:{submission_set_unique_id}"
    manifest = etree.SubElement(etree.SubElement(signature, _DS + "Object"), _DS + "Manifest", Id=manifest_id)
    for unique_id, data in documents:
        _digest(etree.SubElement(manifest, _DS + "Reference", URI=f"urn:oid:{unique_id}"), data)
    # SignedInfo references, digests over the elements in their final place (exclusive C14N).
    for target, kind in ((manifest, "http://www.w3.org/2000/09/xmldsig#Manifest"),
                         (signed_props, "http://uri.etsi.org/01903#SignedProperties"),
                         (properties, "http://www.w3.org/2000/09/xmldsig#SignatureProperties")):
        reference = etree.SubElement(signed_info, _DS + "Reference", URI=f"#{target.get('Id')}", Type=kind)
        etree.SubElement(etree.SubElement(reference, _DS + "Transforms"), _DS + "Transform", Algorithm=_EXC_C14N)
        _digest(reference, _c14n(target))
    signature_value.text = base64.b64encode(signer.raw_signature(_c14n(signed_info))).decode("ascii")
    return bytes(etree.tostring(signature, xml_declaration=True, encoding="UTF-8"))


def manifest_digests(signature: bytes) -> dict[str, str]:
    """``{uniqueId: base64 SHA-256}`` of the documents a DSG signature lists."""
    root = etree.fromstring(signature)
    return {
        ref.get("URI", "").removeprefix("urn:oid:"): ref.findtext(_DS + "DigestValue", "")
        for ref in root.iterfind(f"{_DS}Object/{_DS}Manifest/{_DS}Reference")
    }


def verify_dsg(signature: bytes, documents: Sequence[SignedDocument], certificate_pem: bytes) -> None:
    """Check a signature made by :func:`dsg_signature` against its documents and signer.

    Raises
    ------
    ValueError
        A manifest or reference digest does not match (XML DSig core validation leaves manifest
        references to the application, XML DSig 5.1: they are checked here).
    cryptography.exceptions.InvalidSignature
        The signature value does not match.
    """
    expected = {unique_id: _b64_sha256(data) for unique_id, data in documents}
    if manifest_digests(signature) != expected:
        raise ValueError("the signature's manifest does not match the documents")
    root = etree.fromstring(signature)
    by_id = {el.get("Id"): el for el in root.iter() if el.get("Id")}
    signed_info = root.find(_DS + "SignedInfo")
    if signed_info is None:
        raise ValueError("no SignedInfo")
    for reference in signed_info.iterfind(_DS + "Reference"):
        target = by_id.get(reference.get("URI", "").removeprefix("#"))
        if target is None or reference.findtext(_DS + "DigestValue") != _b64_sha256(_c14n(target)):
            raise ValueError(f"reference {reference.get('URI')} does not match")
    method = signed_info.find(_DS + "SignatureMethod")
    value = base64.b64decode(root.findtext(_DS + "SignatureValue", ""))
    verify_raw_signature(x509.load_pem_x509_certificate(certificate_pem),
                         method.get("Algorithm", "") if method is not None else "", value, _c14n(signed_info))
