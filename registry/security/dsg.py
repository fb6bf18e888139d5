"""IHE DSG (Document Digital Signature, ITI TF-3 §5.5) verification of a submission's signature.

The signature document is a detached XML-DSig (XAdES) ``ds:Signature``: its ``SignedInfo`` signs a
``ds:Manifest`` whose ``ds:Reference`` elements name each document of the submission by
``urn:oid:<uniqueId>`` with the digest of its bytes. xmlsec verifies the signature over the manifest;
this module then checks each manifest digest against the submitted bytes, and that every document of
the submission is covered. A reference to the SubmissionSet uniqueId names the set itself and carries
no document digest (the ANS DRIMbox reference puts a placeholder there), so its digest is not checked.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime

from cryptography import x509
from lxml import etree

from registry.security.xmldsig import (
    CANONICALIZATIONS,
    DIGEST_ALGORITHMS,
    DS,
    InvalidSignatureError,
    TrustStore,
    manifest_inputs,
    verify_signature,
)
from registry.soap.xmlparse import XmlRejected, parse_xml

__all__ = ["verify_dsg"]

_DS = f"{{{DS}}}"


def _manifest(referenced: list[etree._Element]) -> etree._Element:
    manifests = []
    for element in referenced:
        if element.tag == f"{_DS}Manifest":
            manifests.append(element)
        elif element.tag == f"{_DS}Object":
            manifests.extend(element.findall(f"{_DS}Manifest"))
    if len(manifests) != 1:
        raise InvalidSignatureError(f"SignedInfo must reference exactly one ds:Manifest, found {len(manifests)}")
    return manifests[0]


def _digests(content: bytes, algorithm: str, canonicalize: bool) -> set[bytes]:
    candidates = {hashlib.new(algorithm, content).digest()}
    if canonicalize:  # an XML document (CDA) may be digested after C14N; a KOS never is
        try:
            candidates.add(hashlib.new(algorithm, etree.tostring(parse_xml(content), method="c14n")).digest())
        except XmlRejected:
            pass
    return candidates


def verify_dsg(
    signature_document: bytes,
    *,
    documents: Mapping[str, bytes],
    submission_set_unique_id: str,
    trust: TrustStore,
    now: datetime,
) -> x509.Certificate:
    """Verify the DSG signature document of a submission.

    Parameters
    ----------
    signature_document
        The bytes of the signature document entry.
    documents
        The other documents of the submission: uniqueId → bytes.
    submission_set_unique_id
        The SubmissionSet uniqueId (a manifest reference to it is allowed).
    trust
        CAs that may issue the signing certificate.
    now
        Instant of the certificate validity check.

    Returns
    -------
    cryptography.x509.Certificate
        The signer's certificate.

    Raises
    ------
    InvalidSignatureError
        The document is not a DSG signature, does not verify, or does not cover the submission.
    """
    try:
        root = parse_xml(signature_document)
    except XmlRejected as exc:
        raise InvalidSignatureError(f"the signature document is not XML: {exc}") from exc
    if root.tag != f"{_DS}Signature":
        raise InvalidSignatureError(f"the signature document's root is {etree.QName(root).text}, not ds:Signature")
    with manifest_inputs({f"urn:oid:{uid}": content for uid, content in documents.items()}):
        verified = verify_signature(root, trust=trust, now=now, id_attributes=("Id",), reference_transforms=frozenset())
    covered: set[str] = set()
    for reference in _manifest(verified.referenced).findall(f"{_DS}Reference"):
        uri = reference.get("URI", "")
        if not uri.startswith("urn:oid:"):
            raise InvalidSignatureError(f"manifest reference {uri!r} is not urn:oid:<document uniqueId>")
        unique_id = uri[len("urn:oid:") :]
        if unique_id == submission_set_unique_id:
            continue
        if unique_id not in documents:
            raise InvalidSignatureError(f"manifest reference {uri} names no document of the submission")
        method = reference.find(f"{_DS}DigestMethod")
        algorithm = DIGEST_ALGORITHMS.get(method.get("Algorithm", "") if method is not None else "")
        if algorithm is None:
            raise InvalidSignatureError(f"manifest reference {uri}: digest method not accepted")
        try:
            declared = base64.b64decode("".join((reference.findtext(f"{_DS}DigestValue") or "").split()), validate=True)
        except ValueError as exc:
            raise InvalidSignatureError(f"manifest reference {uri}: DigestValue is not base64") from exc
        transforms = {t.get("Algorithm", "") for t in reference.findall(f"{_DS}Transforms/{_DS}Transform")}
        if transforms - CANONICALIZATIONS:
            raise InvalidSignatureError(f"manifest reference {uri}: transforms {sorted(transforms)} not accepted")
        if declared not in _digests(documents[unique_id], algorithm, bool(transforms)):
            raise InvalidSignatureError(f"manifest digest of {uri} does not match the submitted document")
        covered.add(unique_id)
    missing = sorted(documents.keys() - covered)
    if missing:
        raise InvalidSignatureError(f"documents not covered by the signature manifest: {', '.join(missing)}")
    return verified.certificate
