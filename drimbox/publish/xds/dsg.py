"""The IHE DSG signature document of a submission (ITI TF-3 5.5, Document Digital Signature).

An *enveloping* XML signature (XAdES form) whose ``ds:Manifest`` lists each submitted document
by ``urn:oid:<uniqueId>`` with the SHA-256 digest of its bytes; the signed XAdES properties give the
signing time, the signer's certificate digest and the commitment type (``Source``, ASTM E1762
``1.2.840.10065.1.12.1.14``); a ``ds:SignatureProperty`` names the submission set it signs. The
document travels as its own document entry, tied to the submission set by a ``signs`` association.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import xmlsec
from lxml import etree

from drimbox.publish.xds.rim import Code
from drimbox.publish.xds.signing import Signer
from drimbox.publish.xds.vocabulary import NS

__all__ = ["SOURCE_PURPOSE", "SignedDocument", "dsg_signature", "manifest_digests", "verify_dsg"]

_DS = f"{{{NS['ds']}}}"
_XADES = f"{{{NS['xades']}}}"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SOURCE_PURPOSE = Code("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source")
"""ASTM E1762 signature purpose "Source" (the author's signature), as in the ANS sample."""

SignedDocument = tuple[str, bytes]
"""(document uniqueId, document bytes)."""

# libxmlsec digests the references of a ds:Manifest itself when it signs or verifies (the Python
# binding cannot set XMLSEC_DSIG_FLAGS_IGNORE_MANIFESTS), so it must be able to read "urn:oid:…":
# one process-wide IO callback serves the documents of the signature being made in this thread.
_URN = b"urn:oid:"
_pending = threading.local()
_registered = threading.Lock()
_callbacks_installed = False


def _match(name: bytes) -> bool:
    return name.startswith(_URN) and name[len(_URN):].decode() in getattr(_pending, "documents", {})


def _open(name: bytes) -> io.BytesIO:
    return io.BytesIO(_pending.documents[name[len(_URN):].decode()])


def _read(handle: io.BytesIO, buffer: memoryview) -> int:
    return handle.readinto(buffer)


def _close(handle: Any) -> None:
    handle.close()


@contextmanager
def _serving(documents: Sequence[SignedDocument]) -> Iterator[None]:
    global _callbacks_installed
    with _registered:
        if not _callbacks_installed:
            # The last registered set is asked first, but only when the defaults were registered
            # through the same list: reset, defaults, then ours (once per process).
            xmlsec.cleanup_callbacks()
            xmlsec.register_default_callbacks()
            xmlsec.register_callbacks(_match, _open, _read, _close)
            _callbacks_installed = True
    _pending.documents = dict(documents)
    try:
        yield
    finally:
        _pending.documents = {}


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _digest(parent: etree._Element, data: bytes) -> None:
    etree.SubElement(parent, _DS + "DigestMethod", Algorithm=_SHA256)
    etree.SubElement(parent, _DS + "DigestValue").text = _b64_sha256(data)


def _qualifying_properties(signer: Signer, sig_id: str, props_id: str, signed_at: datetime,
                           purpose: Code) -> etree._Element:
    qualifying = etree.Element(_XADES + "QualifyingProperties", Target=f"#{sig_id}", nsmap={"xades": NS["xades"]})
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
    return qualifying


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
    template = signer.template(signature_id=sig_id)
    signer.add_reference(template, f"#{manifest_id}", type_="http://www.w3.org/2000/09/xmldsig#Manifest")
    signer.add_reference(template, f"#{props_id}", type_="http://uri.etsi.org/01903#SignedProperties")
    signer.add_reference(template, f"#{sig_props_id}", type_="http://www.w3.org/2000/09/xmldsig#SignatureProperties")
    # Re-parse: the template becomes the root of its own document, which the enveloping form needs.
    signature = etree.fromstring(etree.tostring(template))
    etree.SubElement(signature, _DS + "Object").append(
        _qualifying_properties(signer, sig_id, props_id, signed_at, purpose))
    properties = etree.SubElement(etree.SubElement(signature, _DS + "Object"), _DS + "SignatureProperties",
                                  Id=sig_props_id)
    etree.SubElement(properties, _DS + "SignatureProperty", Id=f"purposeOfSignature-{token}",
                     Target=f"#{sig_id}").text = purpose.code
    etree.SubElement(properties, _DS + "SignatureProperty", Id=f"submissionSet-{token}",
                     Target=f"#{sig_id}").text = f"urn:oid:{submission_set_unique_id}"
    manifest = etree.SubElement(etree.SubElement(signature, _DS + "Object"), _DS + "Manifest", Id=manifest_id)
    for unique_id, data in documents:
        _digest(etree.SubElement(manifest, _DS + "Reference", URI=f"urn:oid:{unique_id}"), data)
    signed_props = signature.find(f".//{_XADES}SignedProperties")
    assert signed_props is not None
    with _serving(documents):
        signer.sign(signature, [(manifest, "Id"), (signed_props, "Id"), (properties, "Id")])
    return bytes(etree.tostring(signature, xml_declaration=True, encoding="UTF-8"))


def verify_dsg(signature: bytes, documents: Sequence[SignedDocument], certificate_pem: bytes) -> None:
    """Check a DSG signature against the documents it lists and the signer's certificate.

    Raises
    ------
    xmlsec.Error
        When the signature value or a signed property does not match.
    ValueError
        When the manifest does not list exactly these documents with these digests (XML DSig core
        validation leaves manifest references to the application: XML DSig 5.1).
    """
    expected = {unique_id: _b64_sha256(data) for unique_id, data in documents}
    if manifest_digests(signature) != expected:
        raise ValueError("the signature's manifest does not match the documents")
    root = etree.fromstring(signature)
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(certificate_pem, xmlsec.constants.KeyDataFormatCertPem, None)
    for element in root.iter():
        if element.get("Id"):
            ctx.register_id(element, "Id")
    with _serving(documents):
        ctx.verify(root)


def manifest_digests(signature: bytes) -> dict[str, str]:
    """``{uniqueId: base64 SHA-256}`` of the documents a DSG signature lists (for checks and tests)."""
    root = etree.fromstring(signature)
    return {
        ref.get("URI", "").removeprefix("urn:oid:"): ref.findtext(_DS + "DigestValue", "")
        for ref in root.iterfind(f"{_DS}Object/{_DS}Manifest/{_DS}Reference")
    }
