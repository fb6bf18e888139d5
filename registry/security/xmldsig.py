"""XML-DSig verification with xmlsec (libxmlsec1), hardened for signatures from the network.

Used for the VIHF assertion (an enveloped signature over the assertion) and for the IHE DSG
signature document (a detached signature whose ``ds:Manifest`` lists document digests).
Hardening, in order:

1. The signing certificate is the single ``ds:X509Certificate`` of ``ds:KeyInfo``; it must chain to a
   configured trusted CA (:class:`TrustStore`) and be valid now. Its public key is handed to xmlsec
   as *the* key, so a ``ds:KeyValue`` or any other key in the message is never used.
2. Algorithms come from allow-lists (no XSLT/XPath transforms, no HMAC signature methods).
3. Reference URIs are checked before xmlsec resolves them: same-document ``#id`` only in
   ``SignedInfo``; ``urn:oid:`` only in a DSG manifest. xmlsec's file/HTTP input callbacks are
   replaced by one that serves nothing but ``urn:oid:`` (:func:`install_io_policy`), so no signature
   can make the registry read a file or fetch a URL.
4. Referenced ids must be unique in the document (against signature-wrapping).
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from lxml import etree

__all__ = [
    "DIGEST_ALGORITHMS",
    "DS",
    "InvalidSignatureError",
    "TrustStore",
    "VerifiedSignature",
    "install_io_policy",
    "manifest_inputs",
    "verify_signature",
]

DS = "http://www.w3.org/2000/09/xmldsig#"
_DS = f"{{{DS}}}"

SIGNATURE_METHODS = frozenset(
    {
        # rsa-sha1 stays accepted: the ANS DRIMbox reference and the DMP samples still sign with it.
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
        "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
    }
)
DIGEST_ALGORITHMS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}
"""Digest algorithm URIs and their :mod:`hashlib` names."""
CANONICALIZATIONS = frozenset(
    {
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
        "http://www.w3.org/2006/12/xml-c14n11",
        "http://www.w3.org/2006/12/xml-c14n11#WithComments",
    }
)
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"


class InvalidSignatureError(ValueError):
    """The signature does not verify, or is not acceptable; the message says why."""


class TrustStore:
    """CA certificates trusted to issue signing certificates (roots and intermediates alike)."""

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        self._anchors = list(certificates)
        self._fingerprints = {c.fingerprint(hashes.SHA256()) for c in self._anchors}

    @classmethod
    def from_pem_file(cls, path: Path) -> TrustStore:
        """Read a PEM bundle."""
        return cls(x509.load_pem_x509_certificates(path.read_bytes()))

    @property
    def empty(self) -> bool:
        """Whether nothing is trusted (every signature then fails)."""
        return not self._anchors

    def validate(self, certificate: x509.Certificate, now: datetime) -> None:
        """Check that ``certificate`` is valid at ``now`` and issued by a trusted CA (or is one itself).

        Raises
        ------
        InvalidSignatureError
            Expired, not yet valid, or not issued by any trusted certificate.
        """
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise InvalidSignatureError(
                f"signing certificate {certificate.subject.rfc4514_string()} is not valid now "
                f"({certificate.not_valid_before_utc:%Y-%m-%d} to {certificate.not_valid_after_utc:%Y-%m-%d})"
            )
        if certificate.fingerprint(hashes.SHA256()) in self._fingerprints:
            return
        for anchor in self._anchors:
            if anchor.subject != certificate.issuer or not _is_ca(anchor):
                continue
            if not anchor.not_valid_before_utc <= now <= anchor.not_valid_after_utc:
                continue
            try:
                certificate.verify_directly_issued_by(anchor)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return
        raise InvalidSignatureError(
            f"signing certificate {certificate.subject.rfc4514_string()} (issuer "
            f"{certificate.issuer.rfc4514_string()}) is not issued by a trusted CA"
        )


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


_io_lock = threading.Lock()
_io_installed = False
_NO_INPUTS: Mapping[str, bytes] = MappingProxyType({})
_manifest_inputs: ContextVar[Mapping[str, bytes]] = ContextVar("manifest_inputs", default=_NO_INPUTS)


@contextmanager
def manifest_inputs(inputs: Mapping[str, bytes]) -> Iterator[None]:
    """Serve ``urn:oid:…`` URI → bytes to xmlsec while signing or verifying in this context."""
    token = _manifest_inputs.set(inputs)
    try:
        yield
    finally:
        _manifest_inputs.reset(token)


def install_io_policy() -> None:
    """Replace xmlsec's input callbacks by one that resolves only ``urn:oid:`` URIs.

    xmlsec processes the references of a ``ds:Manifest`` (computing their digests when signing,
    recomputing them when verifying) and would try to open ``urn:oid:<document uniqueId>`` as a
    file. The callback serves the bytes given by :func:`manifest_inputs` (empty otherwise). Without
    the default callbacks no reference can read a local file or fetch a URL. Process-wide, idempotent.
    """
    global _io_installed
    with _io_lock:
        if _io_installed:
            return
        xmlsec.cleanup_callbacks()
        xmlsec.register_callbacks(
            lambda name: bytes(name).startswith(b"urn:oid:"),
            lambda name: io.BytesIO(_manifest_inputs.get().get(bytes(name).decode("utf-8", "replace"), b"")),
            lambda handle, buffer: handle.readinto(buffer),
            lambda handle: handle.close(),
        )
        _io_installed = True


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified: its signer and the elements its SignedInfo references."""

    certificate: x509.Certificate
    referenced: list[etree._Element]


def _certificate(signature: etree._Element) -> x509.Certificate:
    found = signature.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate")
    if len(found) != 1:
        raise InvalidSignatureError(f"ds:KeyInfo must carry exactly one ds:X509Certificate, found {len(found)}")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join((found[0].text or "").split()), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignatureError("ds:X509Certificate is not a base64 DER certificate") from exc


def _algorithm(parent: etree._Element, child: str, allowed: Iterable[str], what: str) -> str:
    element = parent.find(f"{_DS}{child}")
    algorithm = element.get("Algorithm", "") if element is not None else ""
    if algorithm not in allowed:
        raise InvalidSignatureError(f"{what} {algorithm or '(none)'} is not accepted")
    return algorithm


def _ids(root: etree._Element, attribute_names: tuple[str, ...]) -> dict[str, list[etree._Element]]:
    index: dict[str, list[etree._Element]] = {}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        for name in attribute_names:
            value = element.get(name)
            if value is not None:
                index.setdefault(value, []).append(element)
    return index


def verify_signature(
    signature: etree._Element,
    *,
    trust: TrustStore,
    now: datetime,
    id_attributes: tuple[str, ...],
    reference_transforms: frozenset[str],
) -> VerifiedSignature:
    """Verify ``signature`` (a ``ds:Signature`` element inside its document) with xmlsec.

    Parameters
    ----------
    signature
        The ``ds:Signature``.
    trust
        CAs that may issue the signing certificate.
    now
        The instant at which the certificate must be valid.
    id_attributes
        Attribute names that carry the ids ``#id`` references point to (``ID`` for SAML, ``Id`` for DSG).
    reference_transforms
        Transforms allowed on ``SignedInfo`` references besides canonicalizations.

    Raises
    ------
    InvalidSignatureError
        Anything that makes the signature unacceptable, named.
    """
    install_io_policy()
    signed_info = signature.find(f"{_DS}SignedInfo")
    if signed_info is None:
        raise InvalidSignatureError("ds:SignedInfo is missing")
    _algorithm(signed_info, "CanonicalizationMethod", CANONICALIZATIONS, "canonicalization")
    _algorithm(signed_info, "SignatureMethod", SIGNATURE_METHODS, "signature method")
    root = signature.getroottree().getroot()
    index = _ids(root, id_attributes)
    referenced: list[etree._Element] = []
    references = signed_info.findall(f"{_DS}Reference")
    if not references:
        raise InvalidSignatureError("ds:SignedInfo has no ds:Reference")
    for reference in references:
        uri = reference.get("URI", "")
        if not uri.startswith("#") or len(uri) < 2:
            raise InvalidSignatureError(f"reference URI {uri!r} is not a same-document #id reference")
        targets = index.get(uri[1:], [])
        if len(targets) != 1:
            raise InvalidSignatureError(f"reference {uri} must designate exactly one element, found {len(targets)}")
        for transform in reference.findall(f"{_DS}Transforms/{_DS}Transform"):
            algorithm = transform.get("Algorithm", "")
            if algorithm not in CANONICALIZATIONS and algorithm not in reference_transforms:
                raise InvalidSignatureError(f"transform {algorithm} is not accepted on reference {uri}")
        _algorithm(reference, "DigestMethod", DIGEST_ALGORITHMS, f"digest method of reference {uri}")
        referenced.append(targets[0])
    certificate = _certificate(signature)
    trust.validate(certificate, now)
    key = xmlsec.Key.from_memory(
        certificate.public_bytes(serialization.Encoding.PEM), xmlsec.constants.KeyDataFormatCertPem
    )
    xmlsec.tree.add_ids(root, list(id_attributes))
    context = xmlsec.SignatureContext()
    context.key = key
    try:
        context.verify(signature)
    except xmlsec.Error as exc:
        raise InvalidSignatureError(f"the XML signature does not verify ({exc.args[-1] if exc.args else exc})") from exc
    return VerifiedSignature(certificate, referenced)
