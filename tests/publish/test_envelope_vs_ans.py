"""The ITI-41 envelope compared with the ANS reference sample, element by element.

Both envelopes are reduced to ``{path: values}``: WS-Addressing headers, VIHF attributes, and for
the submission set, the KOS entry and the signature entry every slot, classification (by metadata
name) and external identifier; associations by type and roles; MTOM documents. Paths must be the
same apart from :data:`ONLY_IN_SAMPLE` / :data:`ONLY_OURS`; values must be equal apart from
:data:`VALUES_DIFFER`, where both sides must still have the same *form*. Each exception says why.

What this cannot show: that the live DMP accepts the envelope. That needs the DMP's test platform,
an ANS test account and an IGC-Santé certificate, none of which exist here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from drimbox.devnet.pki import TestCA
from drimbox.publish.submission import Manifest, SubmissionPolicy, build_submission
from drimbox.publish.vihf import VihfIssuer, VihfProfile, VihfSubject
from drimbox.publish.xds import Code, Signer, submit_objects_request
from drimbox.publish.xds.client import iti41_envelope
from drimbox.publish.xds.vocabulary import NS, SCHEME
from drimbox.reports import IdentityStatus, ImagingReport, Organisation, PatientIdentity, Practitioner, ReportAction

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "drim-m-data" / "Echantillons_validateurs"
VALIDATOR_SAMPLE = SAMPLES / "Validateur_XDS" / "XDS.xml"
CROSS_SAMPLE = SAMPLES / "Cross-validateur" / "Echantillons_de_validation" / "XDS.xml"

_RIM = f"{{{NS['rim']}}}"
_SAML = f"{{{NS['saml2']}}}"
SCHEME_NAMES = {
    SCHEME.SS_AUTHOR: "author", SCHEME.DE_AUTHOR: "author", SCHEME.SS_CONTENT_TYPE: "contentTypeCode",
    SCHEME.DE_CLASS: "classCode", SCHEME.DE_TYPE: "typeCode", SCHEME.DE_FORMAT: "formatCode",
    SCHEME.DE_CONFIDENTIALITY: "confidentialityCode", SCHEME.DE_EVENT: "eventCodeList",
    SCHEME.DE_FACILITY: "healthcareFacilityTypeCode", SCHEME.DE_PRACTICE: "practiceSettingCode",
    SCHEME.SS_PATIENT_ID: "patientId", SCHEME.SS_SOURCE_ID: "sourceId", SCHEME.SS_UNIQUE_ID: "uniqueId",
    SCHEME.DE_PATIENT_ID: "patientId", SCHEME.DE_UNIQUE_ID: "uniqueId", SCHEME.SUBMISSION_SET_NODE: "SubmissionSet",
}

ONLY_IN_SAMPLE = {
    "KOS/Slot[URI]": "URI is an XDM attribute (ITI TF-3 4.2.3.2.24); an XDS.b submission carries none",
    "Signature/Slot[URI]": "same",
    "KOS/Slot[submissionTime]": "submissionTime belongs to the submission set (ITI TF-3 Table 4.2.3.2-1 has no "
                                "DocumentEntry.submissionTime); the cross-validation sample omits it too",
    "Signature/Slot[submissionTime]": "same",
    "Signature/Description": "the sample's is empty; an empty LocalizedString says nothing",
}
ONLY_OURS = {
    "KOS/Author/authorRole": "brief/DESIGN §3: authorRole of the IdNatPS author (profession, 1.2.250.1.71.1.2.7)",
    "KOS/Author/authorSpecialty": "brief/DESIGN §3: authorSpecialty (RPPS specialty, 1.2.250.1.71.4.2.5)",
    "SubmissionSet/Author/authorRole": "same author as the KOS entry",
    "SubmissionSet/Author/authorSpecialty": "same",
    "Signature/Author/authorRole": "same",
    "Signature/Author/authorSpecialty": "same",
    "KOS/Slot[hash]": "in the validator sample, not in the cross-validation one (optional for a Document "
                      "Source, checked by the repository: ITI TF-3 4.2.3.2.14/20)",
    "KOS/Slot[size]": "same",
    "Signature/Slot[hash]": "same",
    "Signature/Slot[size]": "same",
    "Assertion/Conditions": "a validity window (SAML 2.0 core 2.5): a captured header cannot be replayed later",
}

DTM = r"^\d{14}$"
OID = r"^[0-2](\.(0|[1-9]\d*))+$"
INS_NH = r"^\d{15}\^\^\^&1\.2\.250\.1\.213\.1\.4\.(8|9|10|11)&ISO\^NH$"
XCN_IDNPS = r"^8\d{11}\^[^^]*\^[^^]*\^\^\^[^^]*\^\^\^&1\.2\.250\.1\.71\.4\.2\.1&ISO\^D\^\^\^IDNPS$"
XON_IDNST = r"^[^^]+\^\^\^\^\^&1\.2\.250\.1\.71\.4\.2\.2&ISO\^IDNST\^\^\^\d+$"
VALUES_DIFFER: dict[str, tuple[str, str]] = {
    # path: (form both values must have, why the value differs)
    "Header/MessageID": (r"^urn:uuid:[0-9a-f-]{36}$", "a new message id per request (WS-Addressing)"),
    "Header/To": (r"^https?://", "the endpoint of this network's repository, not the DMP's test platform"),
    "Assertion/ID": (r"^[_0-9a-f][0-9a-f-]{35,36}$", "a new id per assertion; ours starts with '_' (xs:ID)"),
    "Assertion/IssueInstant": (r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", "issued now"),
    "Assertion/AuthnInstant": (r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", "issued now"),
    "Assertion/Issuer": (r"^CN=", "subject of this node's organisation certificate"),
    "Assertion/Signature": (r".", "signed with this node's key (SHA-256; the sample shows rsa-sha1)"),
    "Assertion/NameID": (r"^8\d{11}$", "the IdNatPS of the report's author"),
    "Assertion/Attribute[urn:oasis:names:tc:xspa:1.0:subject:subject-id]": (r".", "the author's name"),
    "Assertion/Attribute[Identifiant_Structure]": (r".", "the structure's IdNatStruct (XXXXXXX in the sample)"),
    "Assertion/Attribute[LPS_ID]": (r".", "this software (XXXXXXX in the sample)"),
    "Assertion/Attribute[LPS_Nom]": (r".", "same"),
    "Assertion/Attribute[LPS_Version]": (r".", "same"),
    "Assertion/Attribute[LPS_ID_HOMOLOGATION_DMP]": (r".", "same"),
    "Assertion/Attribute[Secteur_Activite]": (r"^SA\d\d\^1\.2\.250\.1\.71\.4\.2\.4$", "the site's sector"),
    "Assertion/Attribute[urn:oasis:names:tc:xacml:2.0:resource:resource-id]": (INS_NH, "the patient's INS"),
    "Assertion/Attribute[urn:oasis:names:tc:xacml:2.0:subject:role]": (
        r"^Role:\w+@1\.2\.250\.1\.71\.(1\.2\.7|4\.2\.5)", "the author's profession and specialty (radiology)"),
    "SubmissionSet/Slot[submissionTime]": (DTM, "submitted now"),
    "SubmissionSet/Name": (r".", "the report's title"),
    "SubmissionSet/Description": (r".", "names the exam"),
    "SubmissionSet/Author/authorPerson": (
        r"\^(IDNPS|EI)$", "the report's author (IdNatPS); the validator sample names the software (EI)"),
    "SubmissionSet/Author/authorInstitution": (XON_IDNST, "the report's organisation"),
    "SubmissionSet/ExternalIdentifier[patientId]": (INS_NH, "the patient's INS"),
    "SubmissionSet/ExternalIdentifier[sourceId]": (OID, "this node's source OID"),
    "SubmissionSet/ExternalIdentifier[uniqueId]": (OID, "a new submission set"),
    "KOS/Slot[creationTime]": (DTM, "made now"),
    "KOS/Slot[serviceStartTime]": (r"^\d{14}(\+\d{4})?$", "the exam's start; the cross-validation sample gives "
                                   "local time with an offset, ours is UTC without (ITI TF-3 Table 4.2.3.1.7-2)"),
    "KOS/Slot[serviceStopTime]": (r"^\d{14}(\+\d{4})?$", "the exam's end; same"),
    "KOS/Slot[sourcePatientId]": (r"\^PI$", "the site's IPP (DESIGN §3); the sample puts the INS there"),
    "KOS/Slot[sourcePatientInfo]": (r"^PID-(5|7|8)\|", "the patient's traits"),
    "KOS/Slot[legalAuthenticator]": (XCN_IDNPS, "the report's legal authenticator"),
    "KOS/Slot[urn:ihe:iti:xds:2013:referenceIdList]": (
        r"\^urn:ihe:iti:xds:(2013:accession|2016:studyInstanceUID|2013:order)$",
        "the exam's accession, study and order; the Study Instance UID has no assigning authority (a UID "
        "is globally unique; DESIGN §3), the sample's 1.2.3.4.5.6 is a placeholder"),
    "KOS/Description": (r".", "the study description"),
    "KOS/Author/authorPerson": (r"\^(IDNPS|EI)$", "the report's author"),
    "KOS/Author/authorInstitution": (XON_IDNST, "the report's organisation"),
    "KOS/Classification[eventCodeList]": (
        r"^\w+@1\.2\.250\.1\.213\.(1\.1\.5\.(618|695)|2\.5)$",
        "the exam's modality and region; the two ANS samples code regions in different schemes "
        "(1.2.250.1.213.2.5, 1.2.250.1.213.1.1.5.695): ours is publish.region_scheme"),
    "KOS/ExternalIdentifier[patientId]": (INS_NH, "the patient's INS"),
    "KOS/ExternalIdentifier[uniqueId]": (OID, "the KOS SOP Instance UID"),
    "Signature/Slot[creationTime]": (DTM, "signed now"),
    "Signature/Slot[serviceStartTime]": (DTM, "signed now"),
    "Signature/Slot[serviceStopTime]": (DTM, "signed now"),
    "Signature/Slot[sourcePatientId]": (r"\^(PI|NH)$", "the site's IPP, as on the KOS entry"),
    "Signature/Slot[legalAuthenticator]": (XCN_IDNPS, "the report's legal authenticator"),
    "Signature/Slot[urn:ihe:iti:xds:2013:referenceIdList]": (
        r"\^urn:ihe:iti:xds:(2013:accession|2016:studyInstanceUID|2013:order)$", "as on the KOS entry"),
    "Signature/Author/authorPerson": (XCN_IDNPS, "the report's author"),
    "Signature/Author/authorInstitution": (XON_IDNST, "the report's organisation"),
    "Signature/Classification[confidentialityCode]": (
        r"^(N@2\.16\.840\.1\.113883\.5\.25|(MASQUE_PS|INVISIBLE_PATIENT)@1\.2\.250\.1\.213\.1\.1\.4\.13)$",
        "the report's visibility flags; the sample masks its signature but not its KOS"),
    "Signature/ExternalIdentifier[patientId]": (INS_NH, "the patient's INS"),
    "Signature/ExternalIdentifier[uniqueId]": (OID, "a new signature document"),
    "KOS/Slot[hash]": (r"^[0-9A-F]{40}$", "SHA-1 of our KOS"),
    "KOS/Slot[size]": (r"^\d+$", "size of our KOS"),
    "Signature/Slot[hash]": (r"^[0-9A-F]{40}$", "SHA-1 of our signature (the sample copies the KOS's)"),
    "Signature/Slot[size]": (r"^\d+$", "size of our signature"),
}


def _slot_values(el: etree._Element) -> list[str]:
    return [v.text or "" for v in el.iterfind(f"{_RIM}ValueList/{_RIM}Value")]


def _coded(cl: etree._Element) -> str:
    scheme = next((v for s in cl.iterfind(f"{_RIM}Slot") if s.get("name") == "codingScheme"
                   for v in _slot_values(s)), "")
    return f"{cl.get('nodeRepresentation')}@{scheme}"


def _object(prefix: str, obj: etree._Element, out: dict[str, list[str]]) -> None:
    for slot in obj.iterfind(f"{_RIM}Slot"):
        out[f"{prefix}/Slot[{slot.get('name')}]"] = sorted(_slot_values(slot))
    for tag in ("Name", "Description"):
        text = obj.find(f"{_RIM}{tag}/{_RIM}LocalizedString")
        if text is not None and text.get("value"):
            out[f"{prefix}/{tag}"] = [text.get("value", "")]
    for cl in obj.iterfind(f"{_RIM}Classification"):
        name = SCHEME_NAMES.get(cl.get("classificationScheme") or cl.get("classificationNode", ""), "?")
        if name == "author":
            for slot in cl.iterfind(f"{_RIM}Slot"):
                out.setdefault(f"{prefix}/Author/{slot.get('name')}", []).extend(_slot_values(slot))
        elif name == "SubmissionSet":
            out[f"{prefix}/Classification[SubmissionSet]"] = ["node"]
        else:
            out.setdefault(f"{prefix}/Classification[{name}]", []).append(_coded(cl))
    for ei in obj.iterfind(f"{_RIM}ExternalIdentifier"):
        out[f"{prefix}/ExternalIdentifier[{SCHEME_NAMES[ei.get('identificationScheme', '')]}]"] = [ei.get("value", "")]


def _role(obj: etree._Element) -> str:
    if obj.tag == f"{_RIM}RegistryPackage":
        return "SubmissionSet"
    return "KOS" if obj.get("mimeType") == "application/dicom" else "Signature"


def reduce_envelope(envelope: etree._Element) -> dict[str, list[str]]:
    """``{path: sorted values}`` of everything the comparison looks at."""
    out: dict[str, list[str]] = {}
    header = envelope.find(f"{{{NS['soap']}}}Header")
    assert header is not None
    for tag in ("MessageID", "To", "Action"):
        out[f"Header/{tag}"] = [header.findtext(f"{{{NS['wsa']}}}{tag}", "")]
    assertion = header.find(f"{{{NS['wsse']}}}Security/{_SAML}Assertion")
    assert assertion is not None
    out["Assertion/ID"] = [assertion.get("ID", "")]
    out["Assertion/IssueInstant"] = [assertion.get("IssueInstant", "")]
    out["Assertion/Issuer"] = [assertion.findtext(f"{_SAML}Issuer", "")]
    out["Assertion/Signature"] = ["signed"] if assertion.find(f"{{{NS['ds']}}}Signature") is not None else []
    out["Assertion/NameID"] = [assertion.findtext(f"{_SAML}Subject/{_SAML}NameID", "")]
    authn = assertion.find(f"{_SAML}AuthnStatement")
    assert authn is not None
    out["Assertion/AuthnInstant"] = [authn.get("AuthnInstant", "")]
    out["Assertion/AuthnContextClassRef"] = [authn.findtext(f"{_SAML}AuthnContext/{_SAML}AuthnContextClassRef", "")]
    if assertion.find(f"{_SAML}Conditions") is not None:
        out["Assertion/Conditions"] = ["present"]
    for attribute in assertion.iterfind(f"{_SAML}AttributeStatement/{_SAML}Attribute"):
        values = []
        for value in attribute.iterfind(f"{_SAML}AttributeValue"):
            coded = next(iter(value), None)
            values.append(f"{etree.QName(coded).localname}:{coded.get('code')}@{coded.get('codeSystem')}"
                          if coded is not None else (value.text or "").strip())
        out[f"Assertion/Attribute[{attribute.get('Name')}]"] = sorted(values)
    body = envelope.find(f"{{{NS['soap']}}}Body")
    assert body is not None
    objects = body.find(f".//{_RIM}RegistryObjectList")
    assert objects is not None
    roles = {}
    for obj in objects:
        if obj.tag in (f"{_RIM}RegistryPackage", f"{_RIM}ExtrinsicObject"):
            role = _role(obj)
            roles[obj.get("id")] = role
            _object(role, obj, out)
            if obj.tag == f"{_RIM}ExtrinsicObject":
                out[f"{role}/@mimeType"] = [obj.get("mimeType", "")]
                out[f"{role}/@objectType"] = [obj.get("objectType", "")]
    for assoc in objects.iterfind(f"{_RIM}Association"):
        kind = assoc.get("associationType", "").rpartition(":")[2]
        key = f"Association[{kind}:{roles[assoc.get('sourceObject')]}->{roles[assoc.get('targetObject')]}]"
        out[key] = sorted(v for s in assoc.iterfind(f"{_RIM}Slot") for v in _slot_values(s))
    for document in body.iterfind(f".//{{{NS['xdsb']}}}Document"):
        include = document.find(f"{{{NS['xop']}}}Include")
        out[f"Document[{roles[document.get('id')]}]"] = ["xop:Include" if include is not None else "inline"]
    return out


def sample_like_report() -> ImagingReport:
    """A report with the ANS sample's identities and exam (so that equal things can be equal)."""
    return ImagingReport(
        action=ReportAction.PUBLISH, message_control_id="M1",
        patient=PatientIdentity(ipp="IPP6", ipp_authority="AUT", ipp_authority_oid="1.2.250.1.213.4.5.2.4",
                                birth_family_name="PAT-SIX", given_names=("Alain",), birth_date="19960112", sex="M",
                                status=IdentityStatus.QUALIFIED, ins="162018885045327", ins_oid="1.2.250.1.213.1.4.10"),
        study_instance_uid="1.3.6.1.4.1.5962.99.1.3711725607.829148806.1687338938407.3.116",
        accession_number="7252295367250016", accession_issuer="1.2.840.113619.6.196", order_id="12989855966",
        set_id="1.2.250.1.999.1", version_number=1, document_id="1.2.250.1.999.1.1", title="submissionset title",
        effective_time=datetime(2023, 11, 3, 15, 17, tzinfo=UTC),
        author=Practitioner("899700367909", "DOC0036790", "KIT"),
        legal_authenticator=Practitioner("899700367909", "DOC0036790", "KIT"),
        organisation=Organisation("BCOM", "499700367909006"),
        service_start=datetime(2021, 1, 4, 8, 22, tzinfo=UTC), service_stop=datetime(2021, 1, 4, 15, 5, tzinfo=UTC),
    )


def sample_like_policy() -> SubmissionPolicy:
    """The site's codes set to the sample's values."""
    return SubmissionPolicy(
        source_id="1.2.250.1.999.1.1.8121",
        healthcare_facility_type=Code("SA25", "1.2.250.1.71.4.2.4", "Laboratoire de biologie médicale"),
        practice_setting=Code("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
        content_type=Code("04", "1.2.250.1.213.2.2", "Hospitalisation de jour"),
        author_role=Code("10", "1.2.250.1.71.1.2.7", "Medecin"),
        author_specialty=Code("SM44", "1.2.250.1.71.4.2.5", "Radio-diagnostic"),
        modality_scheme="1.2.250.1.213.1.1.5.618", region_scheme="1.2.250.1.213.1.1.5.695",
        zone=ZoneInfo("Europe/Paris"),
    )


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[etree._Element]:
    """Our ITI-41 envelope for the sample-like report (a 2-series MR exam), with a signed VIHF."""
    ca = TestCA.create(tmp_path_factory.mktemp("pki"))
    issued = ca.issue("site-a")
    signer = Signer.from_files(issued.cert_path, issued.key_path)
    report = sample_like_report()
    manifest = Manifest("1.2.826.0.1.3680043.10.543.1", b"DICM" * 1000, ("1.1", "1.2"), modalities=("MR",),
                        body_parts=("ABDOMENPELVIS",), study_description="IRM abdomino-pelvienne")
    built = build_submission(report, manifest, sample_like_policy(), signer,
                             submission_uid="1.2.250.1.999.1.1.8121.7.1",
                             now=datetime(2023, 11, 3, 15, 17, 24, tzinfo=UTC))
    issuer = VihfIssuer(VihfProfile("499700367909006", Code("SA25", "1.2.250.1.71.4.2.4"), "lps", "drimbox", "0.1",
                                    "HOMOL"), signer)
    assertion = issuer.issue(VihfSubject(report.author, Code("10", "1.2.250.1.71.1.2.7", "Medecin"),
                                         Code("SM44", "1.2.250.1.71.4.2.5", "Radio"),
                                         "162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH"))
    envelope, _ = iti41_envelope("http://127.0.0.4:8090/xds/repository", submit_objects_request(built.submission),
                                 built.documents, assertion=assertion)
    yield etree.fromstring(etree.tostring(envelope))


@pytest.mark.parametrize("sample", [VALIDATOR_SAMPLE, CROSS_SAMPLE], ids=["validator", "cross-validation"])
def test_same_elements_slots_classifications_and_identifiers(ours: etree._Element, sample: Path) -> None:
    mine = reduce_envelope(ours)
    theirs = reduce_envelope(etree.parse(str(sample)).getroot())
    missing = {k for k in set(theirs) - set(mine) if k not in ONLY_IN_SAMPLE}
    extra = {k for k in set(mine) - set(theirs) if k not in ONLY_OURS}
    assert not missing, f"the sample has, we lack: {sorted(missing)}"
    assert not extra, f"we have, the sample lacks: {sorted(extra)}"


@pytest.mark.parametrize("sample", [VALIDATOR_SAMPLE, CROSS_SAMPLE], ids=["validator", "cross-validation"])
def test_values_equal_unless_they_must_differ(ours: etree._Element, sample: Path) -> None:
    mine = reduce_envelope(ours)
    theirs = reduce_envelope(etree.parse(str(sample)).getroot())
    for path in sorted(set(mine) & set(theirs)):
        if path in VALUES_DIFFER:
            form, _why = VALUES_DIFFER[path]
            for side, values in (("ours", mine[path]), ("sample", theirs[path])):
                bad = [v for v in values if not re.search(form, v)]
                assert not bad, f"{path}: {side} value(s) {bad} not of the form {form}"
        else:
            assert mine[path] == theirs[path], f"{path}: ours {mine[path]} != sample {theirs[path]}"


def test_every_exception_is_explained() -> None:
    assert all(why for why in ONLY_IN_SAMPLE.values())
    assert all(why for why in ONLY_OURS.values())
    assert all(why for _form, why in VALUES_DIFFER.values())


def test_our_times_are_utc_without_offset(ours: etree._Element) -> None:
    mine = reduce_envelope(ours)
    times = [v for k, vs in mine.items() if k.endswith("Time]") for v in vs]
    assert times and all(re.fullmatch(DTM, t) for t in times)
    assert mine["KOS/Slot[serviceStartTime]"] == ["20210104082200"]  # 09:22 in Paris is 08:22 UTC
