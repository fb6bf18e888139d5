"""The signed trust list (F11): the genuine ANS sample, every named rejection, the last good list kept,
and the registry's own signed list verified by a node (built, served at ``/whitelist``, fetched).

The ANS samples are read from ``../shared/drim-m-data`` (never copied into the repository). The genuine
list is validated at a fixed time inside its signer's validity (2026-09-14 … 2029-09-14), with the
IGC-Santé TEST root taken from the sample's own KeyInfo as the trust anchor.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lxml import etree
from structlog.testing import capture_logs

from drimbox.config import TrustListSettings
from drimbox.devnet.pki import TestCA
from drimbox.errors import TrustListRejected, UntrustedPeer
from drimbox.trust.trustlist import TrustList, TrustListPolicy, TrustListRefresher, verify_trust_list
from registry.app import create_app
from registry.config import RegistrySettings
from registry.trustlist import ListedNode, TrustListPublisher, build_trust_list, sign_trust_list, trustlist_router

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".." / "shared" / "drim-m-data" / "Referencement_DRIMBox" / "Liste_blanche_TEST"
SIGNED = DATA / "Liste_blanche_signee" / "LISTEBLANCHE_DRIM-M_SIGNEE_TEST.xml"
UNSIGNED = DATA / "Liste_blanche_non_signee" / "LISTEBLANCHE_DRIM-M_NONSIGNEE_TEST.xml"
ANS_CN = "Liste Blanche DRIM-M"
ANS_OU = "318751275100020"
AT = datetime(2026, 9, 17, 9, 0, tzinfo=UTC)
"""Validation time of the genuine sample: just after its xades:SigningTime (2026-09-17T08:27:36Z)."""
DS = "http://www.w3.org/2000/09/xmldsig#"
ANS = "https://github.com/ansforge/DRIM-M_DATA"
EVIL_DOMAINE = (
    "<Domaine><Identifiant>999</Identifiant><db>evil.example.org</db><vi></vi><Denomination>X</Denomination>"
    "<DNCertificatOperateur>CN=evil.example.org</DNCertificatOperateur><SupportContact>x@example.org</SupportContact>"
    "<DateMAJ>2026-06-01T00:00:00Z</DateMAJ></Domaine>"
)


def _genuine() -> bytes:
    return SIGNED.read_bytes()


def _ans_chain() -> list[x509.Certificate]:
    """Signer, intermediate, root — as carried by the sample's KeyInfo."""
    root = etree.fromstring(_genuine())
    return [x509.load_der_x509_certificate(base64.b64decode(node.text or ""))
            for node in root.iter(f"{{{DS}}}X509Certificate")]


@pytest.fixture(scope="module")
def ans_root() -> x509.Certificate:
    chain = _ans_chain()
    assert chain[2].subject == chain[2].issuer  # the self-signed TEST AC RACINE IGC-SANTE ELEMENTAIRE
    return chain[2]


def _verify_ans(xml: bytes, ans_root: x509.Certificate, *, at: datetime = AT, cn: str = ANS_CN,
                ou: str | None = ANS_OU) -> TrustList:
    return verify_trust_list(xml, trusted_cas=[ans_root], crls=[], signer_cn=cn, signer_ou=ou, at=at)


def _reason(call: object) -> str:
    assert callable(call)
    with pytest.raises(TrustListRejected) as caught:
        call()
    return caught.value.reason


# -- a signer issued by a devnet TestCA ---------------------------------------------------------


def _ca_key(ca: TestCA) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def issue_signer(ca: TestCA, *, cn: str = ANS_CN, ou: str = ANS_OU, not_before: datetime | None = None,
                 not_after: datetime | None = None) -> tuple[bytes, x509.Certificate]:
    """A trust-list signer certificate (CN/OU like the ANS one) issued by ``ca``; returns (key PEM, cert)."""
    ca_key = _ca_key(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    usage = x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DRIMBOX TEST REGISTRY"),
        ]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(hours=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert


NODES = [
    ListedNode(1, "db1.devnet.test", "vi1.devnet.test", "Site A", "CN=db1.devnet.test,OU=1,O=A,C=FR", "a@devnet.test"),
    ListedNode(2, "db2.devnet.test", "", "Site B", "CN=db2.devnet.test,OU=2,O=B,C=FR", "b@devnet.test"),
]


def registry_list(ca: TestCA, *, key_pem: bytes | None = None, cert: x509.Certificate | None = None,
                  generated_at: datetime | None = None) -> bytes:
    """A list of :data:`NODES` built and signed by the registry code."""
    if key_pem is None or cert is None:
        key_pem, cert = issue_signer(ca)
    when = generated_at or datetime.now(UTC)
    return sign_trust_list(build_trust_list(NODES, generated_at=when), key_pem=key_pem, certificate=cert,
                           chain=[ca.cert], signing_time=when)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("trustlist-ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """Another CA with the *same* subject name as :func:`ca`: a name match alone must not build a chain."""
    return TestCA.create(tmp_path_factory.mktemp("trustlist-other-ca"))


# -- the genuine ANS list -------------------------------------------------------------------------


def test_genuine_ans_list_is_accepted(ans_root: x509.Certificate) -> None:
    result = _verify_ans(_genuine(), ans_root)
    assert result.generated_at == datetime(2026, 6, 19, 18, 6, 52, tzinfo=UTC)
    assert result.signing_time == datetime(2026, 9, 17, 8, 27, 36, tzinfo=UTC)
    assert result.signer_subject.startswith("CN=Liste Blanche DRIM-M,OU=318751275100020")
    assert len(result.entries) == 17
    first = result.entries[0]
    assert (first.identifiant, first.db, first.vi, first.denomination) == (
        "3", "db3.test.mesimagesmedicales.fr", "vi3.test.mesimagesmedicales.fr", "ANS")
    assert first.dn_certificat_operateur.startswith("CN=db3.test.mesimagesmedicales.fr,OU=318751275100020")
    assert first.support_contact == "drim-m@esante.gouv.fr"
    assert first.date_maj == datetime(2024, 12, 10, 11, 27, 12, tzinfo=UTC)
    assert "db1543.test.mesimagesmedicales.fr" in result.db_hosts


def test_unsigned_ans_sample_is_rejected(ans_root: x509.Certificate) -> None:
    assert _reason(lambda: _verify_ans(UNSIGNED.read_bytes(), ans_root)) == "unsigned"


def test_one_character_of_a_db_host_changed(ans_root: x509.Certificate) -> None:
    xml = _genuine()
    tampered = xml.replace(b"<db>db4.test.", b"<db>db8.test.", 1)
    assert tampered != xml and len(tampered) == len(xml)
    assert _reason(lambda: _verify_ans(tampered, ans_root)) == "signature-invalid"


def test_domaine_wrapped_in_an_injected_signature(ans_root: x509.Certificate) -> None:
    # The filter-2 transform subtracts every ds:Signature, so such content would stay "signed": refused.
    injected = _genuine().replace(
        b"</ListeDomaines>", f'<ds:Signature xmlns:ds="{DS}">{EVIL_DOMAINE}</ds:Signature></ListeDomaines>'.encode(), 1
    )
    assert _reason(lambda: _verify_ans(injected, ans_root)) == "several-signatures"


def test_domaine_hidden_in_the_genuine_signature(ans_root: x509.Certificate) -> None:
    smuggled = f'<ds:Object><Domaine xmlns="{ANS}">{EVIL_DOMAINE.removeprefix("<Domaine>")}</ds:Object>'
    hidden = _genuine().replace(b"</ds:Signature>", f"{smuggled}</ds:Signature>".encode(), 1)
    assert _reason(lambda: _verify_ans(hidden, ans_root)) == "signature-wrapping"


def test_signature_not_last_child(ans_root: x509.Certificate) -> None:
    root = etree.fromstring(_genuine())
    signature = root[-1]
    root.remove(signature)
    root.insert(0, signature)
    moved = etree.tostring(root)
    assert _reason(lambda: _verify_ans(moved, ans_root)) == "signature-not-last"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # SHA-1 is not accepted for the list that decides whom the node talks to.
        (b"2001/04/xmldsig-more#rsa-sha256", b"2000/09/xmldsig#rsa-sha1"),
        # A filter that would leave the list itself unsigned.
        (b">/descendant::ds:Signature<", b">/descendant::*<"),
        (b'Filter="subtract"', b'Filter="intersect"'),
        # Without the whole-document reference only the SignedProperties would be signed.
        (b'URI=""', b'URI="#xades-id-c04d616ad61eb8e95075ef098fa1801e"'),
    ],
)
def test_signature_policy(ans_root: x509.Certificate, old: bytes, new: bytes) -> None:
    xml = _genuine()
    assert old in xml
    assert _reason(lambda: _verify_ans(xml.replace(old, new, 1), ans_root)) == "signature-policy"


def test_doctype_and_garbage_are_malformed(ans_root: x509.Certificate) -> None:
    xml = _genuine()
    with_doctype = xml.replace(b"?><ListeBlancheDRIM-M", b'?><!DOCTYPE ListeBlancheDRIM-M [<!ENTITY e "x">]>'
                               b"<ListeBlancheDRIM-M", 1)
    assert with_doctype != xml
    assert _reason(lambda: _verify_ans(with_doctype, ans_root)) == "malformed"
    assert _reason(lambda: _verify_ans(b"\x00not xml", ans_root)) == "malformed"
    assert _reason(lambda: _verify_ans(b'<other xmlns="urn:x"/>', ans_root)) == "malformed"


def test_signing_certificate_v2_mismatch(ans_root: x509.Certificate) -> None:
    xml = _genuine()
    tampered = xml.replace(b"<ds:DigestValue>Uxsc", b"<ds:DigestValue>Vxsc", 1)
    assert tampered != xml
    assert _reason(lambda: _verify_ans(tampered, ans_root)) == "signing-certificate-mismatch"


def test_wrong_signer_cn_or_ou(ans_root: x509.Certificate) -> None:
    assert _reason(lambda: _verify_ans(_genuine(), ans_root, cn="Liste Blanche AUTRE")) == "signer-name"
    assert _reason(lambda: _verify_ans(_genuine(), ans_root, ou="999999999999999")) == "signer-name"


def test_genuine_list_outside_its_signer_validity(ans_root: x509.Certificate) -> None:
    later = datetime(2029, 9, 15, tzinfo=UTC)  # the signer expired 2029-09-14; its CAs run to 2033
    assert _reason(lambda: _verify_ans(_genuine(), ans_root, at=later)) == "signer-expired"
    earlier = datetime(2026, 9, 1, tzinfo=UTC)
    assert _reason(lambda: _verify_ans(_genuine(), ans_root, at=earlier)) == "signer-not-yet-valid"


def test_genuine_list_with_another_ca_trusted(ca: TestCA) -> None:
    assert _reason(lambda: verify_trust_list(_genuine(), trusted_cas=[ca.cert], signer_cn=ANS_CN,
                                             signer_ou=ANS_OU, at=AT)) == "untrusted-chain"
    assert _reason(lambda: verify_trust_list(_genuine(), trusted_cas=[], signer_cn=ANS_CN,
                                             signer_ou=ANS_OU, at=AT)) == "untrusted-chain"


# -- lists signed under a devnet TestCA ----------------------------------------------------------


def test_registry_list_round_trip(ca: TestCA) -> None:
    result = verify_trust_list(registry_list(ca), trusted_cas=[ca.cert], signer_cn=ANS_CN, signer_ou=ANS_OU,
                               at=datetime.now(UTC))
    assert [(e.identifiant, e.db, e.vi) for e in result.entries] == [
        ("1", "db1.devnet.test", "vi1.devnet.test"), ("2", "db2.devnet.test", "")]
    assert result.entries[0].dn_certificat_operateur == "CN=db1.devnet.test,OU=1,O=A,C=FR"


def test_registry_list_uses_the_ans_signature_shape(ca: TestCA) -> None:
    root = etree.fromstring(registry_list(ca))
    assert root.tag == f"{{{ANS}}}ListeBlancheDRIM-M" and root.get("versionFormat") == "1.0.0"
    assert root[-1].tag == f"{{{DS}}}Signature"
    ns = {"ds": DS, "f": "http://www.w3.org/2002/06/xmldsig-filter2", "x": "http://uri.etsi.org/01903/v1.3.2#"}
    assert root.xpath("ds:Signature/ds:SignedInfo/ds:Reference[@URI='']/ds:Transforms/ds:Transform/f:XPath/text()",
                      namespaces=ns) == ["/descendant::ds:Signature"]
    assert root.xpath("count(//x:SignedProperties//x:SigningCertificateV2)", namespaces=ns) == 1
    assert root.xpath("count(//x:SignedProperties/x:SignedSignatureProperties/x:SigningTime)", namespaces=ns) == 1


def test_signed_by_a_ca_that_is_not_trusted(ca: TestCA, other_ca: TestCA) -> None:
    assert ca.cert.subject == other_ca.cert.subject
    xml = registry_list(ca)
    assert _reason(lambda: verify_trust_list(xml, trusted_cas=[other_ca.cert], signer_cn=ANS_CN, signer_ou=ANS_OU,
                                             at=datetime.now(UTC))) == "untrusted-chain"


def _crl(ca: TestCA, revoked: list[x509.Certificate], *, next_update: timedelta = timedelta(days=7)
         ) -> x509.CertificateRevocationList:
    now = datetime.now(UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now - timedelta(hours=1)).next_update(now + next_update))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(now - timedelta(minutes=30)).build()
        )
    return builder.sign(_ca_key(ca), hashes.SHA256())


def test_signer_revoked_in_a_local_crl(ca: TestCA, other_ca: TestCA) -> None:
    key_pem, cert = issue_signer(ca)
    xml = registry_list(ca, key_pem=key_pem, cert=cert)
    now = datetime.now(UTC)

    def verify(*crls: x509.CertificateRevocationList) -> TrustList:
        return verify_trust_list(xml, trusted_cas=[ca.cert], crls=list(crls), signer_cn=ANS_CN, signer_ou=ANS_OU,
                                 at=now)

    assert _reason(lambda: verify(_crl(ca, [cert]))) == "signer-revoked"
    _, someone_else = issue_signer(ca)
    assert len(verify(_crl(ca, [someone_else])).entries) == 2  # a CRL that does not list the signer
    assert _reason(lambda: verify(_crl(other_ca, []))) == "crl-invalid"  # same issuer name, wrong key
    assert _reason(lambda: verify(_crl(ca, [], next_update=timedelta(hours=-0.5)))) == "crl-stale"


def test_signer_expired_at_validation_time(ca: TestCA) -> None:
    now = datetime.now(UTC)
    key_pem, cert = issue_signer(ca, not_before=now - timedelta(days=2), not_after=now - timedelta(days=1))
    xml = registry_list(ca, key_pem=key_pem, cert=cert, generated_at=now - timedelta(days=1, hours=12))
    assert _reason(lambda: verify_trust_list(xml, trusted_cas=[ca.cert], signer_cn=ANS_CN, signer_ou=ANS_OU,
                                             at=now)) == "signer-expired"


# -- the policy keeps the last good list ---------------------------------------------------------


class Clock:
    """A settable clock: the genuine list is checked at :data:`AT`, devnet lists at the real time."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def policy(ans_root: x509.Certificate, ca: TestCA) -> TrustListPolicy:
    """A policy trusting the IGC-Santé TEST root and the devnet CA, loaded with the genuine ANS list."""
    clock = Clock(AT)
    policy = TrustListPolicy(trusted_cas=[ans_root], signer_cn=ANS_CN, signer_ou=ANS_OU, clock=clock)
    policy.update(_genuine(), source="ans-sample")
    return policy


def _rejected_keeps_previous(policy: TrustListPolicy, xml: bytes, reason: str) -> None:
    previous = policy.current
    assert previous is not None
    with capture_logs() as logs, pytest.raises(TrustListRejected) as caught:
        policy.update(xml, source="test")
    assert caught.value.reason == reason
    assert policy.current is previous
    assert policy.is_trusted_host("db3.test.mesimagesmedicales.fr")
    policy.check_url("https://db3.test.mesimagesmedicales.fr/dicomweb/studies/1.2.3/series/4.5.6")
    alerts = [e for e in logs if e["log_level"] == "error" and e.get("alert") is True]
    assert alerts and alerts[0]["reason"] == reason


def test_policy_accepts_genuine_and_checks_urls(policy: TrustListPolicy) -> None:
    assert policy.current is not None and len(policy.current.entries) == 17
    policy.check_url("https://DB7.test.mesimagesmedicales.fr:8443/wado/studies/1")
    assert policy.is_trusted_host("db175.test.mesimagesmedicales.fr")
    assert not policy.is_trusted_host("vi3.test.mesimagesmedicales.fr")  # a viewer host is not a node face
    with pytest.raises(UntrustedPeer):
        policy.check_url("http://db3.test.mesimagesmedicales.fr/wado")
    with pytest.raises(UntrustedPeer):
        policy.check_url("https://evil.example.org/wado")


def test_policy_without_a_list_trusts_nobody(ans_root: x509.Certificate) -> None:
    empty = TrustListPolicy(trusted_cas=[ans_root], signer_cn=ANS_CN, signer_ou=ANS_OU, clock=Clock(AT))
    with pytest.raises(UntrustedPeer):
        empty.check_url("https://db3.test.mesimagesmedicales.fr/wado")
    with pytest.raises(TrustListRejected):
        empty.update(UNSIGNED.read_bytes())
    assert empty.current is None and not empty.is_trusted_host("db3.test.mesimagesmedicales.fr")


def test_policy_keeps_previous_list_after_each_ans_failure(policy: TrustListPolicy) -> None:
    genuine = _genuine()
    cases = {
        "unsigned": UNSIGNED.read_bytes(),
        "signature-invalid": genuine.replace(b"<db>db4.test.", b"<db>db8.test.", 1),
        "several-signatures": genuine.replace(
            b"</ListeDomaines>", f'<ds:Signature xmlns:ds="{DS}">{EVIL_DOMAINE}</ds:Signature></ListeDomaines>'.encode()
        ),
        "malformed": b"<ListeBlancheDRIM-M",
    }
    for reason, xml in cases.items():
        _rejected_keeps_previous(policy, xml, reason)
    policy.signer_cn = "Liste Blanche AUTRE"
    _rejected_keeps_previous(policy, genuine, "signer-name")
    policy.signer_cn = ANS_CN
    assert isinstance(policy.clock, Clock)
    policy.clock.now = datetime(2029, 9, 15, tzinfo=UTC)
    _rejected_keeps_previous(policy, genuine, "signer-expired")


def test_policy_keeps_previous_list_after_each_devnet_failure(policy: TrustListPolicy, ca: TestCA,
                                                             other_ca: TestCA) -> None:
    assert isinstance(policy.clock, Clock)
    policy.clock.now = datetime.now(UTC)
    _rejected_keeps_previous(policy, registry_list(other_ca), "untrusted-chain")  # other_ca is not trusted
    policy.trusted_cas.append(ca.cert)
    key_pem, cert = issue_signer(ca)
    policy.crls = [_crl(ca, [cert])]
    _rejected_keeps_previous(policy, registry_list(ca, key_pem=key_pem, cert=cert), "signer-revoked")
    key_pem, cert = issue_signer(ca, not_before=policy.clock.now - timedelta(days=2),
                                 not_after=policy.clock.now - timedelta(days=1))
    _rejected_keeps_previous(policy, registry_list(ca, key_pem=key_pem, cert=cert,
                                                   generated_at=policy.clock.now - timedelta(days=1, hours=2)),
                             "signer-expired")
    key_pem, cert = issue_signer(ca, cn="Someone Else")
    _rejected_keeps_previous(policy, registry_list(ca, key_pem=key_pem, cert=cert), "signer-name")
    key_pem, cert = issue_signer(ca, ou="111111111111111")
    _rejected_keeps_previous(policy, registry_list(ca, key_pem=key_pem, cert=cert), "signer-name")

    # A good newer list replaces the genuine one; the older genuine list cannot come back (replay).
    fresh = policy.update(registry_list(ca))
    assert policy.current is fresh and policy.is_trusted_host("db2.devnet.test")
    assert not policy.is_trusted_host("db3.test.mesimagesmedicales.fr")
    policy.clock.now = AT
    with pytest.raises(TrustListRejected) as caught:
        policy.update(_genuine())
    assert caught.value.reason == "older-than-current" and policy.current is fresh


def test_policy_from_settings_loads_the_local_file(tmp_path: Path, ans_root: x509.Certificate) -> None:
    ca_file = tmp_path / "igc-sante-test-root.pem"
    ca_file.write_bytes(ans_root.public_bytes(serialization.Encoding.PEM))
    settings = TrustListSettings(file=SIGNED, ca_files=(ca_file,))
    policy = TrustListPolicy.from_settings(settings, clock=lambda: AT)
    assert policy.current is not None and policy.is_trusted_host("db3.test.mesimagesmedicales.fr")
    with capture_logs() as logs:
        bad = TrustListPolicy.from_settings(TrustListSettings(file=UNSIGNED, ca_files=(ca_file,)), clock=lambda: AT)
    assert bad.current is None
    assert any(e["log_level"] == "error" and e.get("reason") == "unsigned" for e in logs)
    first_start = TrustListPolicy.from_settings(TrustListSettings(file=tmp_path / "none-yet.xml"))
    assert first_start.current is None


# -- the registry serves it, a node fetches it ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served_registry(tmp_path: Path, ca: TestCA) -> Iterator[tuple[str, TrustListPublisher]]:
    """The registry app (create_app with a trust list publisher) on a loopback port."""
    key_pem, cert = issue_signer(ca)
    publisher = TrustListPublisher(NODES, key_pem=key_pem, certificate=cert, chain=[ca.cert])
    app = create_app(RegistrySettings(data_dir=tmp_path), trust_list=publisher)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "registry did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", publisher
    finally:
        server.should_exit = True
        thread.join(10)


def test_router_serves_the_signed_list(ca: TestCA) -> None:
    key_pem, cert = issue_signer(ca)
    publisher = TrustListPublisher(NODES, key_pem=key_pem, certificate=cert, chain=[ca.cert], max_age_s=600)
    app = FastAPI()
    app.include_router(trustlist_router(publisher))
    with TestClient(app) as client:
        first = client.get("/whitelist")
        second = client.get("/whitelist")
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/xml")
    assert first.content == second.content  # signed once, reused for max_age_s
    result = verify_trust_list(first.content, trusted_cas=[ca.cert], signer_cn=ANS_CN, signer_ou=ANS_OU,
                               at=datetime.now(UTC))
    assert result.db_hosts == {"db1.devnet.test", "db2.devnet.test"}


def test_node_refreshes_from_the_registry(served_registry: tuple[str, TrustListPublisher], ca: TestCA,
                                         ans_root: x509.Certificate, tmp_path: Path) -> None:
    base_url, _publisher = served_registry
    clock = Clock(AT)
    policy = TrustListPolicy(trusted_cas=[ans_root, ca.cert], signer_cn=ANS_CN, signer_ou=ANS_OU, clock=clock)
    policy.update(_genuine())
    clock.now = datetime.now(UTC)

    broken = TrustListRefresher(policy, f"{base_url}/no-such-list", interval_s=3600)
    try:
        assert broken.refresh_once() is None and broken.last_error is not None
        assert policy.is_trusted_host("db3.test.mesimagesmedicales.fr")  # still the previous list
    finally:
        broken.stop()

    saved = tmp_path / "cache" / "whitelist.xml"
    saved.parent.mkdir()
    refresher = TrustListRefresher(policy, f"{base_url}/whitelist", interval_s=3600, save_to=saved)
    refresher.start()
    try:
        deadline = time.monotonic() + 10
        while not policy.is_trusted_host("db1.devnet.test"):
            assert time.monotonic() < deadline, f"no list fetched ({refresher.last_error})"
            time.sleep(0.02)
    finally:
        refresher.stop()
    assert refresher.fetches == 1 and refresher.last_error is None
    policy.check_url("https://db2.devnet.test/dicomweb/studies/1.2.3")
    with pytest.raises(UntrustedPeer):
        policy.check_url("https://db3.test.mesimagesmedicales.fr/dicomweb/studies/1.2.3")

    # The good list was saved: a restarted node loads it before its first fetch.
    restarted = TrustListPolicy(trusted_cas=[ca.cert], signer_cn=ANS_CN, signer_ou=ANS_OU)
    assert restarted.load_file(saved) is not None and restarted.is_trusted_host("db1.devnet.test")


def test_refresher_from_settings() -> None:
    policy = TrustListPolicy(trusted_cas=[], signer_cn=ANS_CN, signer_ou=ANS_OU)
    assert TrustListRefresher.from_settings(policy, TrustListSettings()) is None
    refresher = TrustListRefresher.from_settings(
        policy, TrustListSettings(url="https://registry.devnet.test/whitelist", refresh_s=600)
    )
    assert refresher is not None and refresher.interval_s == 600
    refresher.stop()


# -- devnet wiring helpers -----------------------------------------------------------------------


def test_devnet_files_feed_the_registry_and_the_node(tmp_path: Path) -> None:
    from drimbox.config import NodeSettings
    from drimbox.devnet.trustlist import write_trust_list_files
    from drimbox.trust.peers import HostListPolicy
    from drimbox.trust.trustlist import peer_policy_from_settings

    devnet_ca = TestCA.create(tmp_path / "pki")
    files = write_trust_list_files(devnet_ca, tmp_path / "registry", [
        ListedNode(1, "127.0.0.2", "127.0.0.2", "Demo site-a", "CN=site-a", "ops@devnet.test"),
        ListedNode(2, "127.0.0.3", "127.0.0.3", "Demo site-b", "CN=site-b", "ops@devnet.test"),
    ])
    assert files.registry_args()[0] == "--whitelist-nodes"
    assert "signer_ou" in tomli_w.dumps({"trust_list": files.node_settings("https://127.0.0.4/whitelist")})
    publisher = TrustListPublisher.from_files(nodes_file=files.nodes_file, cert_file=files.cert_file,
                                              key_file=files.key_file)
    list_file = tmp_path / "whitelist.xml"
    list_file.write_bytes(publisher.signed_xml())

    pacs = {"aet": "PACS", "host": "127.0.0.1", "port": 4242}
    trust = {**files.node_settings("https://127.0.0.4:8090/whitelist"), "file": str(list_file)}
    policy = peer_policy_from_settings(NodeSettings(pacs=pacs, trust_list=trust))  # type: ignore[arg-type]
    assert isinstance(policy, TrustListPolicy)
    policy.check_url("https://127.0.0.3:8443/dicomweb/studies/1.2.3")
    with pytest.raises(UntrustedPeer):
        policy.check_url("https://127.0.0.9:8443/dicomweb/studies/1.2.3")

    # Inbound: a node certificate from the same CA whose host is listed / not listed.
    listed = x509.load_pem_x509_certificate(devnet_ca.issue("site-b", hosts=["127.0.0.3"]).cert_path.read_bytes())
    stranger = x509.load_pem_x509_certificate(devnet_ca.issue("site-x", hosts=["127.0.0.9"]).cert_path.read_bytes())
    entry = policy.entry_for_certificate(listed)
    assert entry is not None and entry.denomination == "Demo site-b"
    assert policy.entry_for_certificate(stranger) is None

    static = peer_policy_from_settings(NodeSettings(pacs=pacs, peers={"hosts": ["127.0.0.2"]}))  # type: ignore[arg-type]
    assert isinstance(static, HostListPolicy)


def test_registry_cli_serves_the_whitelist(tmp_path: Path) -> None:
    """``drimbox registry serve --whitelist-*`` (a real process on loopback) publishes a list a node accepts."""
    import subprocess
    import sys

    import httpx

    from drimbox.devnet.trustlist import write_trust_list_files

    devnet_ca = TestCA.create(tmp_path / "pki")
    files = write_trust_list_files(devnet_ca, tmp_path / "signer", [
        ListedNode(7, "127.0.0.2", "", "Demo site-a", "CN=site-a", "ops@devnet.test"),
    ])
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "drimbox", "registry", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(tmp_path / "registry"), *files.registry_args()],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else "registry exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "registry did not start"
            time.sleep(0.1)
        settings = TrustListSettings(**files.node_settings(f"{base}/whitelist"))
        policy = TrustListPolicy.from_settings(settings)
        refresher = TrustListRefresher.from_settings(policy, settings)
        assert refresher is not None
        try:
            result = refresher.refresh_once()
        finally:
            refresher.stop()
        assert result is not None, refresher.last_error
        assert [(e.identifiant, e.db) for e in result.entries] == [("7", "127.0.0.2")]
    finally:
        process.terminate()
        process.wait(15)
