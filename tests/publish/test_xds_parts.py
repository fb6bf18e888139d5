"""XDS.b building blocks: DMP value formats, UTC conversion, MTOM round trip, VIHF and DSG signatures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import xmlsec
from lxml import etree

from drimbox.devnet.pki import TestCA
from drimbox.publish import dmp
from drimbox.publish.vihf import VihfIssuer, VihfProfile, VihfSubject
from drimbox.publish.xds import Code, Signer, dsg_signature, verify_dsg
from drimbox.publish.xds.dsg import manifest_digests
from drimbox.publish.xds.mtom import Attachment, encode_mtom, parse_soap_response, resolve_include
from drimbox.publish.xds.requests import DocumentPart, provide_and_register_request
from drimbox.publish.xds.rim import query_list
from drimbox.publish.xds.soap import build_envelope
from drimbox.publish.xds.vocabulary import NS
from drimbox.reports import Visibility
from registry.security.dsg import verify_dsg as registry_verify
from registry.security.xmldsig import TrustStore, install_io_policy

from .factories import make_report


@pytest.fixture(scope="module")
def signer_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """An organisation certificate from a fresh test CA (EC P-256): cert, key, CA cert."""
    ca = TestCA.create(tmp_path_factory.mktemp("pki"))
    issued = ca.issue("site-a")
    return issued.cert_path, issued.key_path, ca.cert_path


def test_dmp_identifier_forms() -> None:
    report = make_report()
    assert dmp.patient_cx(report.patient) == "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
    assert dmp.source_patient_cx(report.patient) == "IPP101^^^&1.2.250.1.213.4.5.2.4&ISO^PI"
    assert dmp.person_xcn(report.author) == (
        "801234564895^Eric^Thomas^^^DR^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS")
    assert dmp.organisation_xon(report.organisation) == (
        "Centre de radiologie Ambroise^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1750803447")
    assert dmp.accession_reference("A^1", "1.2.3") == "A\\S\\1^^^&1.2.3&ISO^urn:ihe:iti:xds:2013:accession"
    assert dmp.accession_reference("A1", "RIS") == "A1^^^RIS^urn:ihe:iti:xds:2013:accession"
    assert dmp.study_reference("1.2.3") == "1.2.3^^^^urn:ihe:iti:xds:2016:studyInstanceUID"
    assert dmp.source_patient_info(report.patient) == ("PID-5|PAT-TROIS^DOMINIQUE^^^^^L", "PID-7|19790328",
                                                       "PID-8|F")
    assert query_list(["a'b", "c"]) == "('a''b','c')"


def test_visibility_codes() -> None:
    codes = dmp.confidentiality_codes(Visibility(masked_to_professionals=True, invisible_to_patient=True,
                                                 invisible_to_legal_representatives=True))
    assert [c.code for c in codes] == ["N", "MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"]
    assert {c.scheme for c in codes[1:]} == {"1.2.250.1.213.1.1.4.13"}
    assert [c.code for c in dmp.confidentiality_codes(Visibility())] == ["N"]


@pytest.mark.parametrize(
    ("zone", "date", "time", "utc"),
    [
        ("Europe/Paris", "20240115", "093000", datetime(2024, 1, 15, 8, 30, tzinfo=UTC)),  # winter, +1
        ("Europe/Paris", "20240715", "093000.123", datetime(2024, 7, 15, 7, 30, tzinfo=UTC)),  # summer, +2
        ("Indian/Reunion", "20240715", "0930", datetime(2024, 7, 15, 5, 30, tzinfo=UTC)),  # +4
        ("America/Cayenne", "20240715", "2330", datetime(2024, 7, 16, 2, 30, tzinfo=UTC)),  # -3, next day in UTC
        ("Pacific/Tahiti", "20240715", "", datetime(2024, 7, 15, 10, 0, tzinfo=UTC)),  # -10, no time: midnight
    ],
)
def test_dicom_local_time_to_utc(zone: str, date: str, time: str, utc: datetime) -> None:
    assert dmp.dicom_local_datetime(date, time, ZoneInfo(zone)) == utc


def test_unusable_dicom_date() -> None:
    assert dmp.dicom_local_datetime("2024", "1200", ZoneInfo("Europe/Paris")) is None


def test_mtom_round_trip_keeps_binary_bytes() -> None:
    kos = bytes(range(256)) * 10 + b"\r\n--MIMEBoundary\r\n"  # binary, with CRLFs and a fake delimiter
    request, attachments = provide_and_register_request(etree.Element("metadata"),
                                                        [DocumentPart("urn:uuid:1", "application/dicom", kos)])
    envelope = build_envelope("urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b", "http://x", request)
    message = encode_mtom(etree.tostring(envelope), attachments, "a")
    parsed, parts = parse_soap_response(message.content_type, message.body)
    document = parsed.find(f".//{{{NS['xdsb']}}}Document")
    assert document is not None and resolve_include(document, parts) == kos


def test_vihf_assertion_is_signed_and_carries_the_vihf_attributes(signer_files: tuple[Path, Path, Path]) -> None:
    cert, key, _ = signer_files
    issuer = VihfIssuer(VihfProfile("1750803447", Code("SA07", "1.2.250.1.71.4.2.4"), "id", "drimbox", "1", "H"),
                        Signer.from_files(cert, key))
    report = make_report()
    assertion = issuer.issue(VihfSubject(report.author, Code("10", "1.2.250.1.71.1.2.7", "Medecin"), None,
                                         dmp.patient_cx(report.patient)))
    # Moved into an envelope and re-parsed, as the registry receives it.
    envelope = build_envelope("a", "http://x", etree.Element("b"), assertion=assertion)
    received = etree.fromstring(etree.tostring(envelope)).find(f".//{{{NS['saml2']}}}Assertion")
    assert received is not None
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_file(str(cert), xmlsec.constants.KeyDataFormatCertPem)
    ctx.register_id(received, "ID")
    ctx.verify(received.find(f"{{{NS['ds']}}}Signature"))
    names = [a.get("Name") for a in received.iter(f"{{{NS['saml2']}}}Attribute")]
    assert names[:3] == ["VIHF_Version", "Secteur_Activite", "Ressource_URN"]
    assert "Authentification_Mode" in names and "urn:oasis:names:tc:xacml:2.0:subject:role" in names
    received.find(f".//{{{NS['saml2']}}}NameID").text = "899999999999"  # tampering breaks the signature
    with pytest.raises(xmlsec.Error):
        ctx.verify(received.find(f"{{{NS['ds']}}}Signature"))


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_dsg_signature_lists_each_document(signer_files: tuple[Path, Path, Path], tmp_path: Path, kind: str) -> None:
    cert, key, ca = signer_files if kind == "ec" else (*_rsa_pair(tmp_path), tmp_path / "rsa.pem")
    docs = [("1.2.3", b"KOS bytes"), ("1.2.4", b"<ClinicalDocument/>")]
    signature = dsg_signature(Signer.from_files(cert, key), docs, "1.2.5")
    verify_dsg(signature, docs, cert.read_bytes())
    # The registry's verifier (xmlsec) accepts it too: two independent implementations agree.
    install_io_policy()
    registry_verify(signature, documents={"1.2.3": docs[0][1], "1.2.4": docs[1][1]}, submission_set_unique_id="1.2.5",
                    trust=TrustStore.from_pem_file(ca), now=datetime.now(UTC))
    assert set(manifest_digests(signature)) == {"1.2.3", "1.2.4"}
    assert b"urn:oid:1.2.840.10065.1.12.1.14" in signature and b"urn:oid:1.2.5" in signature
    with pytest.raises(ValueError):
        verify_dsg(signature, [("1.2.3", b"other bytes"), docs[1]], cert.read_bytes())
    with pytest.raises(ValueError):
        verify_dsg(signature.replace(b"urn:oid:1.2.5", b"urn:oid:1.2.6"), docs, cert.read_bytes())


def _rsa_pair(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa organisation")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "rsa.pem", tmp_path / "rsa.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_attachment_ids_are_cid_urls() -> None:
    _, attachments = provide_and_register_request(etree.Element("m"), [DocumentPart("d", "text/xml", b"x")])
    assert attachments == [Attachment("doc1@drimbox", "text/xml", b"x")]
