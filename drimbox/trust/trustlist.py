"""The signed national trust list of DRIMBox nodes (F11, ANS ``ListeBlancheDRIM-M``).

The list is published as XML with an enveloped XAdES-BASELINE-B signature. The ANS signs it with an
XPath Filter 2.0 transform (``subtract /descendant::ds:Signature``) that ``signxml`` cannot apply, so
the XML signature itself is checked by xmlsec (libxmlsec1); this module only decides *what* may be
signed and *who* may sign:

* exactly one ``ds:Signature``, the last child of the root — the filter leaves everything inside any
  ``ds:Signature`` unsigned, so nothing may hide there (and no list element may appear inside it);
* two references only: the whole document (``URI=""``, enveloped or filter-2 subtract, then a
  canonicalisation) and the ``xades:SignedProperties`` of this signature; algorithms from allow-lists,
  and xmlsec is told to refuse any other transform;
* entries are read only at ``/ListeBlancheDRIM-M/ListeDomaines/Domaine``;
* the signer is the one end-entity certificate of ``KeyInfo``; its digest must equal the XAdES
  ``SigningCertificateV2`` digest; its CN/OU are the configured ones; it is valid at the validation
  time, chains to a configured CA (``cryptography.x509.verification``) and is not revoked in a local CRL.

Every refusal raises :class:`~drimbox.errors.TrustListRejected` with a named ``reason``.
:class:`TrustListPolicy` keeps the last good list (a failed update leaves it in force and logs an
alert) and is the node's :class:`~drimbox.trust.peers.PeerPolicy`; :class:`TrustListRefresher`
fetches the list on a schedule.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

import httpx
import structlog
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID
from lxml import etree

from drimbox.config import NodeSettings, TrustListSettings
from drimbox.errors import TrustListRejected, UntrustedPeer
from drimbox.trust.peers import HostListPolicy, PeerPolicy

__all__ = [
    "ANS_NS",
    "MAX_LIST_BYTES",
    "REASONS",
    "TrustList",
    "TrustListEntry",
    "TrustListPolicy",
    "TrustListRefresher",
    "load_certificates",
    "load_crls",
    "peer_policy_from_settings",
    "verify_trust_list",
]

log = structlog.get_logger(__name__)

ANS_NS = "https://github.com/ansforge/DRIM-M_DATA"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
FILTER2_NS = "http://www.w3.org/2002/06/xmldsig-filter2"
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
MAX_LIST_BYTES = 8 * 1024 * 1024
"""A trust list larger than this is refused (the ANS list is ≈20 kB)."""

REASONS = frozenset(
    {
        "malformed",
        "unsigned",
        "several-signatures",
        "signature-not-last",
        "signature-wrapping",
        "signature-policy",
        "signature-invalid",
        "signing-certificate-mismatch",
        "signer-name",
        "signer-key-usage",
        "signer-not-yet-valid",
        "signer-expired",
        "untrusted-chain",
        "signer-revoked",
        "ca-revoked",
        "crl-invalid",
        "crl-stale",
        "older-than-current",
    }
)
"""Every reason :class:`TrustListRejected` may carry."""

_DS = f"{{{DS_NS}}}"
_XADES = f"{{{XADES_NS}}}"
_ANS = f"{{{ANS_NS}}}"

_C14N = {
    "http://www.w3.org/2001/10/xml-exc-c14n#": xmlsec.constants.TransformExclC14N,
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315": xmlsec.constants.TransformInclC14N,
    "http://www.w3.org/2006/12/xml-c14n11": xmlsec.constants.TransformInclC14N11,
}
_SIGNATURE_METHODS = {
    # No SHA-1: a list that decides whom the node talks to is not signed with a broken hash.
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": xmlsec.constants.TransformRsaSha256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": xmlsec.constants.TransformRsaSha384,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": xmlsec.constants.TransformRsaSha512,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": xmlsec.constants.TransformEcdsaSha256,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": xmlsec.constants.TransformEcdsaSha384,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": xmlsec.constants.TransformEcdsaSha512,
}
_DIGESTS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": ("sha256", xmlsec.constants.TransformSha256),
    "http://www.w3.org/2001/04/xmldsig-more#sha384": ("sha384", xmlsec.constants.TransformSha384),
    "http://www.w3.org/2001/04/xmlenc#sha512": ("sha512", xmlsec.constants.TransformSha512),
}
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"
_SUBTRACT_SIGNATURES = "/descendant::ds:Signature"
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class TrustListEntry:
    """One ``Domaine`` of the list: a node (its ``db`` host) and who runs it."""

    identifiant: str
    db: str
    """Host of the node's network face (lower-cased); what RetrieveURLs and mTLS peers are checked against."""
    vi: str
    """Host of the node's viewer (may be empty)."""
    denomination: str
    dn_certificat_operateur: str
    support_contact: str
    date_maj: datetime | None


@dataclass(frozen=True, slots=True)
class TrustList:
    """A verified trust list."""

    generated_at: datetime
    entries: tuple[TrustListEntry, ...]
    signer_subject: str
    """RFC 4514 subject of the certificate that signed the list."""
    signing_time: datetime | None
    """``xades:SigningTime`` (as claimed by the signer)."""
    signer_not_after: datetime | None = None
    """End of validity of the signing certificate (monitored: ``drimbox.ops.certificates``)."""

    @property
    def db_hosts(self) -> frozenset[str]:
        return frozenset(entry.db for entry in self.entries)

    def entry_for_host(self, host: str) -> TrustListEntry | None:
        """The entry whose ``db`` host is ``host`` (case-insensitive), if any."""
        wanted = host.lower().rstrip(".")
        return next((entry for entry in self.entries if entry.db == wanted), None)


def _reject(reason: str, detail: str = "") -> TrustListRejected:
    assert reason in REASONS, reason
    return TrustListRejected(reason, detail)


def _parse_datetime(text: str | None, what: str, *, required: bool) -> datetime | None:
    value = (text or "").strip()
    if not value:
        if required:
            raise _reject("malformed", f"{what} is missing")
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _reject("malformed", f"{what}: not an xs:dateTime ({value!r})") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse(xml: bytes) -> etree._Element:
    if len(xml) > MAX_LIST_BYTES:
        raise _reject("malformed", f"larger than {MAX_LIST_BYTES} bytes")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_blank_text=False
    )
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise _reject("malformed", f"not well-formed XML ({exc})") from exc
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise _reject("malformed", "a DOCTYPE is not allowed")
    if root.tag != f"{_ANS}ListeBlancheDRIM-M":
        raise _reject("malformed", f"root element is {root.tag!r}, expected ListeBlancheDRIM-M in {ANS_NS}")
    return root


def _the_signature(root: etree._Element) -> etree._Element:
    signatures = list(root.iter(f"{_DS}Signature"))
    if not signatures:
        raise _reject("unsigned", "no ds:Signature")
    if len(signatures) > 1:
        raise _reject("several-signatures", f"{len(signatures)} ds:Signature elements")
    signature = signatures[0]
    if signature.getparent() is not root or root[-1] is not signature or (signature.tail or "").strip():
        raise _reject("signature-not-last", "the ds:Signature must be the last child of the root")
    if any(isinstance(el.tag, str) and el.tag.startswith(_ANS) for el in signature.iter()):
        # Content of the list inside the signature is never signed (the filter subtracts it).
        raise _reject("signature-wrapping", "trust-list elements inside ds:Signature")
    return signature


def _algorithm(parent: etree._Element | None, child: str, allowed: Iterable[str], what: str) -> str:
    node = parent.find(child) if parent is not None else None
    algorithm = node.get("Algorithm", "") if node is not None else ""
    if algorithm not in allowed:
        raise _reject("signature-policy", f"{what} {algorithm or '(none)'} is not allowed")
    return algorithm


def _check_document_transforms(reference: etree._Element) -> list[str]:
    """The whole-document reference: [filter-2 subtract signatures | enveloped] then at most one c14n."""
    transforms = reference.findall(f"{_DS}Transforms/{_DS}Transform")
    algorithms = [t.get("Algorithm", "") for t in transforms]
    if not algorithms or algorithms[0] not in (_FILTER2, _ENVELOPED):
        raise _reject("signature-policy", "the document reference must exclude the signature (enveloped or filter 2)")
    if len(algorithms) > 2 or (len(algorithms) == 2 and algorithms[1] not in _C14N):
        raise _reject("signature-policy", f"document reference transforms {algorithms} are not allowed")
    if algorithms[0] == _FILTER2:
        xpaths = list(transforms[0])
        if (
            len(xpaths) != 1
            or xpaths[0].tag != f"{{{FILTER2_NS}}}XPath"
            or xpaths[0].get("Filter") != "subtract"
            or (xpaths[0].text or "").strip() != _SUBTRACT_SIGNATURES
            or xpaths[0].nsmap.get("ds") != DS_NS
        ):
            raise _reject("signature-policy", "filter 2 must be exactly: subtract /descendant::ds:Signature")
    return algorithms


def _check_references(root: etree._Element, signature: etree._Element) -> etree._Element:
    """Check SignedInfo; return the ``xades:SignedProperties`` element the second reference covers."""
    signed_info = signature.find(f"{_DS}SignedInfo")
    if signed_info is None or signature.find(f"{_DS}SignatureValue") is None:
        raise _reject("malformed", "ds:Signature without SignedInfo or SignatureValue")
    _algorithm(signed_info, f"{_DS}CanonicalizationMethod", _C14N, "canonicalization")
    _algorithm(signed_info, f"{_DS}SignatureMethod", _SIGNATURE_METHODS, "signature method")
    references = signed_info.findall(f"{_DS}Reference")
    document = [r for r in references if r.get("URI") == ""]
    properties = [r for r in references if r.get("Type") == SIGNED_PROPERTIES_TYPE]
    if len(references) != 2 or len(document) != 1 or len(properties) != 1:
        raise _reject("signature-policy", "expected one reference to the document and one to the SignedProperties")
    for reference in references:
        _algorithm(reference, f"{_DS}DigestMethod", _DIGESTS, "digest method")
    _check_document_transforms(document[0])
    for transform in properties[0].findall(f"{_DS}Transforms/{_DS}Transform"):
        if transform.get("Algorithm") not in _C14N:
            raise _reject("signature-policy", "the SignedProperties reference may only be canonicalised")
    uri = properties[0].get("URI", "")
    if not uri.startswith("#") or len(uri) < 2:
        raise _reject("signature-policy", f"SignedProperties reference URI {uri!r} is not a same-document id")
    target = uri[1:]
    holders = [el for el in root.iter() if isinstance(el.tag, str) and target in (el.get("Id"), el.get("ID"))]
    if len(holders) != 1:
        raise _reject("signature-wrapping", f"id {target!r} is carried by {len(holders)} elements")
    signed_properties = holders[0]
    if signed_properties.tag != f"{_XADES}SignedProperties":
        raise _reject("signature-policy", f"#{target} is not a xades:SignedProperties")
    qualifying = signed_properties.getparent()
    obj = qualifying.getparent() if qualifying is not None else None
    if (
        qualifying is None
        or qualifying.tag != f"{_XADES}QualifyingProperties"
        or obj is None
        or obj.tag != f"{_DS}Object"
        or obj.getparent() is not signature
    ):
        raise _reject("signature-policy", "SignedProperties must be in QualifyingProperties in this signature's Object")
    sig_id = signature.get("Id")
    if sig_id is not None and qualifying.get("Target") not in (None, f"#{sig_id}"):
        raise _reject("signature-policy", "QualifyingProperties target another signature")
    return signed_properties


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key_info_certificates(signature: etree._Element) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The signer (the one end-entity certificate in KeyInfo) and the other (CA) certificates."""
    certificates: list[x509.Certificate] = []
    for node in signature.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate"):
        try:
            certificates.append(x509.load_der_x509_certificate(base64.b64decode("".join((node.text or "").split()))))
        except (ValueError, binascii.Error) as exc:
            raise _reject("malformed", f"unreadable ds:X509Certificate ({exc})") from exc
    leaves = [c for c in certificates if not _is_ca(c)]
    if len(leaves) != 1:
        raise _reject("signature-policy", f"KeyInfo must carry exactly one end-entity certificate, not {len(leaves)}")
    return leaves[0], [c for c in certificates if _is_ca(c)]


def _check_signing_certificate(signed_properties: etree._Element, signer: x509.Certificate) -> None:
    cert_digests = signed_properties.findall(
        f"{_XADES}SignedSignatureProperties/{_XADES}SigningCertificateV2/{_XADES}Cert/{_XADES}CertDigest"
    )
    if len(cert_digests) == 0:
        raise _reject("signing-certificate-mismatch", "no xades:SigningCertificateV2")
    der = signer.public_bytes(serialization.Encoding.DER)
    for cert_digest in cert_digests:
        method = cert_digest.find(f"{_DS}DigestMethod")
        algorithm = method.get("Algorithm", "") if method is not None else ""
        if algorithm not in _DIGESTS:
            raise _reject("signature-policy", f"SigningCertificateV2 digest {algorithm or '(none)'} is not allowed")
        try:
            claimed = base64.b64decode("".join((cert_digest.findtext(f"{_DS}DigestValue") or "").split()))
        except binascii.Error as exc:
            raise _reject("malformed", "SigningCertificateV2 digest is not base64") from exc
        if hmac.compare_digest(claimed, hashlib.new(_DIGESTS[algorithm][0], der).digest()):
            return
    raise _reject("signing-certificate-mismatch", "SigningCertificateV2 does not name the KeyInfo signer certificate")


def _verify_xml_signature(signature: etree._Element, signed_properties: etree._Element,
                          signer: x509.Certificate) -> None:
    """xmlsec verifies the signature with the signer's key only, with nothing but the allowed transforms."""
    ctx = xmlsec.SignatureContext()
    ctx.register_id(signed_properties, "Id")
    for transform in (*_C14N.values(), xmlsec.constants.TransformEnveloped, xmlsec.constants.TransformXPath2,
                      *(d[1] for d in _DIGESTS.values())):
        ctx.enable_reference_transform(transform)
    for transform in (*_C14N.values(), *_SIGNATURE_METHODS.values()):
        ctx.enable_signature_transform(transform)
    pem = signer.public_bytes(serialization.Encoding.PEM)
    ctx.key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatCertPem)
    try:
        ctx.verify(signature)
    except xmlsec.Error as exc:
        raise _reject("signature-invalid", str(exc)) from exc


def _check_name(signer: x509.Certificate, signer_cn: str, signer_ou: str | None) -> None:
    cns = [str(a.value) for a in signer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    ous = [str(a.value) for a in signer.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if cns != [signer_cn]:
        raise _reject("signer-name", f"signer CN {cns} is not {signer_cn!r}")
    if signer_ou is not None and signer_ou not in ous:
        raise _reject("signer-name", f"signer OU {ous} does not include {signer_ou!r}")
    try:
        usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.digital_signature or usage.content_commitment):
        raise _reject("signer-key-usage", "the signer certificate is not for signatures")


def _check_validity(signer: x509.Certificate, at: datetime) -> None:
    if at < signer.not_valid_before_utc:
        raise _reject("signer-not-yet-valid", f"signer valid from {signer.not_valid_before_utc.isoformat()}")
    if at > signer.not_valid_after_utc:
        raise _reject("signer-expired", f"signer expired {signer.not_valid_after_utc.isoformat()}")


def _verify_chain(signer: x509.Certificate, intermediates: list[x509.Certificate],
                  trusted_cas: Sequence[x509.Certificate], at: datetime) -> list[x509.Certificate]:
    if not trusted_cas:
        raise _reject("untrusted-chain", "no trusted CA is configured")
    # The signer is an end entity without a TLS profile (IGC-Santé ORG SIGN: emailProtection EKU, no SAN):
    # webpki rules for the CAs, any extension set for the signer (its name and key usage are checked above).
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(trusted_cas)))
        .time(at)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        return list(verifier.verify(signer, intermediates).chain)
    except verification.VerificationError as exc:
        raise _reject("untrusted-chain", str(exc)) from exc


def _check_revocation(chain: list[x509.Certificate], crls: Sequence[x509.CertificateRevocationList],
                      at: datetime) -> None:
    """Each certificate below the anchor is looked up in the CRLs its issuer signed."""
    for position, (certificate, issuer) in enumerate(zip(chain, chain[1:], strict=False)):
        public_key = issuer.public_key()
        for crl in crls:
            if crl.issuer != issuer.subject:
                continue
            if not crl.is_signature_valid(public_key):  # type: ignore[arg-type]
                raise _reject("crl-invalid", f"CRL of {issuer.subject.rfc4514_string()} has a bad signature")
            next_update = crl.next_update_utc
            if next_update is not None and next_update < at:
                raise _reject("crl-stale", f"CRL of {issuer.subject.rfc4514_string()} expired {next_update}")
            revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
            if revoked is not None and revoked.revocation_date_utc <= at:
                reason = "signer-revoked" if position == 0 else "ca-revoked"
                raise _reject(reason, f"{certificate.subject.rfc4514_string()} revoked {revoked.revocation_date_utc}")


def _text(element: etree._Element, name: str) -> str:
    return (element.findtext(f"{_ANS}{name}") or "").strip()


def _entries(root: etree._Element) -> tuple[datetime, tuple[TrustListEntry, ...]]:
    generated_children = root.findall(f"{_ANS}DateDeGeneration")
    lists = root.findall(f"{_ANS}ListeDomaines")
    if len(generated_children) != 1 or len(lists) != 1:
        raise _reject("malformed", "expected one DateDeGeneration and one ListeDomaines under the root")
    generated = _parse_datetime(generated_children[0].text, "DateDeGeneration", required=True)
    assert generated is not None
    entries: list[TrustListEntry] = []
    seen: set[str] = set()
    for domaine in lists[0].findall(f"{_ANS}Domaine"):
        db = _text(domaine, "db").lower().rstrip(".")
        vi = _text(domaine, "vi").lower().rstrip(".")
        identifiant = _text(domaine, "Identifiant")
        if not identifiant or not _HOST.match(db) or (vi and not _HOST.match(vi)):
            raise _reject("malformed", f"Domaine {identifiant or '?'}: bad Identifiant, db or vi host")
        if db in seen:
            raise _reject("malformed", f"db host {db} listed twice")
        seen.add(db)
        entries.append(
            TrustListEntry(
                identifiant=identifiant,
                db=db,
                vi=vi,
                denomination=_text(domaine, "Denomination"),
                dn_certificat_operateur=_text(domaine, "DNCertificatOperateur"),
                support_contact=_text(domaine, "SupportContact"),
                date_maj=_parse_datetime(domaine.findtext(f"{_ANS}DateMAJ"), "DateMAJ", required=False),
            )
        )
    return generated, tuple(entries)


def verify_trust_list(
    xml: bytes,
    *,
    trusted_cas: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList] = (),
    signer_cn: str,
    signer_ou: str | None,
    at: datetime,
) -> TrustList:
    """Verify a signed ``ListeBlancheDRIM-M`` at time ``at`` and return its entries.

    Raises
    ------
    TrustListRejected
        With a named ``reason`` (see :data:`REASONS`) at the first check that fails.
    """
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    root = _parse(xml)
    signature = _the_signature(root)
    signed_properties = _check_references(root, signature)
    signer, intermediates = _key_info_certificates(signature)
    _check_signing_certificate(signed_properties, signer)
    _verify_xml_signature(signature, signed_properties, signer)
    _check_name(signer, signer_cn, signer_ou)
    _check_validity(signer, at)
    chain = _verify_chain(signer, intermediates, trusted_cas, at)
    _check_revocation(chain, crls, at)
    generated, entries = _entries(root)
    signing_time = _parse_datetime(
        signed_properties.findtext(f"{_XADES}SignedSignatureProperties/{_XADES}SigningTime"),
        "SigningTime",
        required=False,
    )
    return TrustList(generated_at=generated, entries=entries, signer_subject=signer.subject.rfc4514_string(),
                     signing_time=signing_time, signer_not_after=signer.not_valid_after_utc)


def load_certificates(paths: Iterable[Path]) -> list[x509.Certificate]:
    """PEM certificates from files (a file may hold several)."""
    certificates: list[x509.Certificate] = []
    for path in paths:
        certificates.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
    return certificates


def load_crls(paths: Iterable[Path]) -> list[x509.CertificateRevocationList]:
    """CRLs from files, PEM or DER."""
    crls: list[x509.CertificateRevocationList] = []
    for path in paths:
        data = Path(path).read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            crls.append(x509.load_pem_x509_crl(data))
        else:
            crls.append(x509.load_der_x509_crl(data))
    return crls


class TrustListPolicy:
    """The node's peer policy from the signed trust list; keeps the last good list.

    A list that fails verification, or that is older than the one in force (a replayed list), is
    refused: the previous list stays in force and an alert is logged. Without any good list no peer
    is trusted (fail closed).
    """

    def __init__(
        self,
        *,
        trusted_cas: Sequence[x509.Certificate],
        crls: Sequence[x509.CertificateRevocationList] = (),
        signer_cn: str,
        signer_ou: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.trusted_cas = list(trusted_cas)
        self.crls = list(crls)
        self.signer_cn = signer_cn
        self.signer_ou = signer_ou
        self.clock = clock
        self._current: TrustList | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: TrustListSettings, *, clock: Callable[[], datetime] | None = None) -> Self:
        """Build the policy from ``[trust_list]`` and load ``file`` when set (a bad file is logged, not fatal)."""
        policy = cls(
            trusted_cas=load_certificates(settings.ca_files),
            crls=load_crls(settings.crl_files),
            signer_cn=settings.signer_cn,
            signer_ou=settings.signer_ou,
            **({"clock": clock} if clock is not None else {}),
        )
        if settings.file is not None:
            policy.load_file(settings.file)
        return policy

    @property
    def current(self) -> TrustList | None:
        """The list in force (``None`` until a list verified)."""
        return self._current

    def load_file(self, path: Path) -> TrustList | None:
        """Verify and install a local copy of the list; on failure keep the current one (alert logged)."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            # First start: the refresher saves the first good list there.
            log.info("no local copy of the trust list yet", path=str(path))
            return None
        except OSError as exc:
            log.error("trust list file unreadable", path=str(path), error=str(exc), alert=True)
            return None
        try:
            return self.update(data, source=str(path))
        except TrustListRejected:
            return None

    def update(self, xml: bytes, *, source: str = "") -> TrustList:
        """Verify ``xml`` now and make it the list in force.

        Raises
        ------
        TrustListRejected
            The list failed verification; the previous list stays in force.
        """
        try:
            verified = verify_trust_list(
                xml, trusted_cas=self.trusted_cas, crls=self.crls, signer_cn=self.signer_cn,
                signer_ou=self.signer_ou, at=self.clock(),
            )
            with self._lock:
                previous = self._current
                if previous is not None and verified.generated_at < previous.generated_at:
                    raise _reject("older-than-current", f"generated {verified.generated_at.isoformat()}, "
                                  f"current {previous.generated_at.isoformat()}")
                self._current = verified
        except TrustListRejected as exc:
            kept = self._current
            log.error(
                "trust list rejected; previous list kept",
                reason=exc.reason,
                detail=exc.detail,
                source=source,
                kept_generated_at=kept.generated_at.isoformat() if kept is not None else None,
                alert=True,
            )
            raise
        log.info("trust list updated", source=source, entries=len(verified.entries),
                 generated_at=verified.generated_at.isoformat(), signer=verified.signer_subject)
        return verified

    def is_trusted_host(self, host: str) -> bool:
        """Whether ``host`` is the ``db`` host of a node on the list in force (for inbound mTLS checks)."""
        current = self._current
        return current is not None and current.entry_for_host(host) is not None

    def names_for_host(self, host: str) -> tuple[str, ...]:
        """The names of the listed node at ``host`` (its ``db`` host and ``Identifiant``); empty if not listed."""
        current = self._current
        entry = current.entry_for_host(host) if current is not None else None
        return (entry.db, entry.identifiant) if entry is not None else ()

    def entry_for_certificate(self, certificate: x509.Certificate) -> TrustListEntry | None:
        """The entry of the node presenting ``certificate`` (inbound mTLS), if it is on the list in force.

        The certificate's subjectAltName DNS names and IP addresses (or, without a SAN, its CN) are
        matched against the listed ``db`` hosts. The certificate's chain is the TLS layer's business.
        """
        current = self._current
        if current is None:
            return None
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [*san.get_values_for_type(x509.DNSName),
                     *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]
        except x509.ExtensionNotFound:
            names = [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        return next((entry for name in names if (entry := current.entry_for_host(name)) is not None), None)

    def check_url(self, url: str) -> None:
        """:class:`~drimbox.trust.peers.PeerPolicy`: https URLs whose host is a listed ``db`` host."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https":
            raise UntrustedPeer(f"{url}: only https URLs of trust-listed nodes are followed", host=host)
        if self._current is None:
            raise UntrustedPeer(f"{url}: no verified trust list is loaded", host=host)
        if not self.is_trusted_host(host):
            raise UntrustedPeer(f"{url}: host {host!r} is not on the trust list", host=host)


class TrustListRefresher:
    """Fetches the list from ``url`` every ``interval_s`` (first fetch at start) into a :class:`TrustListPolicy`.

    A failed fetch or a rejected list keeps the list in force (the policy logs the alert) and is
    retried after ``min(interval_s, retry_s)``. With ``save_to``, each list that verified is written
    there (atomically), so that a restart loads the last good list before its first fetch.
    """

    def __init__(
        self,
        policy: TrustListPolicy,
        url: str,
        *,
        interval_s: float = 86400.0,
        retry_s: float = 900.0,
        client: httpx.Client | None = None,
        timeout_s: float = 30.0,
        save_to: Path | None = None,
    ) -> None:
        self.policy = policy
        self.save_to = save_to
        self.url = url
        self.interval_s = interval_s
        self.retry_s = retry_s
        self._client = client if client is not None else httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._owns_client = client is None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.fetches = 0
        self.started_at: float | None = None
        """When :meth:`start` ran (seconds since the epoch): freshness is measured from here until a fetch succeeds."""
        self.last_success: float | None = None
        """When a fetched list last verified (seconds since the epoch)."""

    @classmethod
    def from_settings(cls, policy: TrustListPolicy, settings: TrustListSettings,
                      *, client: httpx.Client | None = None) -> Self | None:
        """A refresher for ``[trust_list] url`` (``None`` when no URL is configured).

        Good lists are saved to ``[trust_list] file`` when set: the file the node loads at start.
        """
        if settings.url is None:
            return None
        return cls(policy, settings.url, interval_s=settings.refresh_s, client=client, save_to=settings.file)

    def refresh_once(self) -> TrustList | None:
        """Fetch and install the list once; ``None`` (and ``last_error``) when it failed."""
        self.fetches += 1
        try:
            with self._client.stream("GET", self.url) as response:
                if response.status_code != 200:
                    raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request,
                                                response=response)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_LIST_BYTES:
                        raise _reject("malformed", f"larger than {MAX_LIST_BYTES} bytes")
        except httpx.HTTPError as exc:
            self.last_error = f"fetch: {exc}"
            log.error("trust list fetch failed; previous list kept", url=self.url, error=str(exc), alert=True)
            return None
        except TrustListRejected as exc:
            self.last_error = exc.reason
            log.error("trust list rejected; previous list kept", url=self.url, reason=exc.reason, alert=True)
            return None
        try:
            result = self.policy.update(bytes(body), source=self.url)
        except TrustListRejected as exc:
            self.last_error = exc.reason
            return None
        self.last_error = None
        self.last_success = time.time()
        if self.save_to is not None:
            self._save(bytes(body))
        return result

    def _save(self, data: bytes) -> None:
        assert self.save_to is not None
        temporary = self.save_to.with_name(f".{self.save_to.name}.tmp")
        try:
            temporary.write_bytes(data)
            temporary.replace(self.save_to)
        except OSError as exc:
            log.error("trust list not saved", path=str(self.save_to), error=str(exc))

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self.refresh_once() is not None
            self._stop.wait(self.interval_s if ok else min(self.interval_s, self.retry_s))

    def start(self) -> None:
        """Start the background thread (fetches at once, then on schedule)."""
        if self._thread is not None:
            return
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name="trust-list-refresher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (and close the HTTP client this refresher created)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._owns_client:
            self._client.close()


def peer_policy_from_settings(settings: NodeSettings) -> PeerPolicy:
    """The node's peer policy: the signed trust list when ``[trust_list]`` has a ``url`` or ``file``,
    else the static ``[peers] hosts`` (the devnet's stand-in)."""
    trust = settings.trust_list
    if trust.url is None and trust.file is None:
        return HostListPolicy(settings.peers.hosts)
    return TrustListPolicy.from_settings(trust)
