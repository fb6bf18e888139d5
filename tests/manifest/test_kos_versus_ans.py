"""Our KOS next to the ANS one (drim-m-data/informatif/KIN/Manifest_KOS.xml), attribute by attribute.

The manifest is built for the exam the ANS KOS describes (Study 1.2.250.1.213.4.5.2.1.101, accession
ACN101 of issuer 1.2.250.1.213.4.5.2.5, placer order OPN101, the ANS test patient, the same three
series and instances). Every attribute path of one that the other lacks must be listed below with
the reason; values that differ are listed too. Anything else is a regression.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
from hl7_samples import report_spec, sample_message
from kos_fixtures import KOS_DUMP, ROOT
from lxml import etree
from pydicom import Dataset
from pydicom.datadict import keyword_for_tag

from drimbox.hl7 import parse_report
from drimbox.manifest import build_manifest, series_retrieve_url
from drimbox.pacs.models import InstanceInfo, SeriesInfo, StudyInfo

CT = "1.2.840.10008.5.1.4.1.1.2"
KO = "1.2.840.10008.5.1.4.1.1.88.59"
STUDY_UID = "1.2.250.1.213.4.5.2.1.101"

EVIDENCE = "CurrentRequestedProcedureEvidenceSequence/ReferencedSeriesSequence"
REQUEST_CODE = "ReferencedRequestSequence/RequestedProcedureCodeSequence"
ANS_ONLY = {
    f"{EVIDENCE}/SeriesNumber": "not in the Hierarchical Series Reference macro (PS3.3 Table C.17-3); "
    "a consumer reads it from the series metadata it retrieves anyway",
    f"{EVIDENCE}/ReferencedSOPSequence/InstanceNumber": "not in the SOP Instance Reference macro "
    "(PS3.3 Table 10-11); dciodvfy would flag it",
    "ContentSequence/ReferencedSOPSequence/InstanceNumber": "same reason, in the TID 2010 content items",
    f"{EVIDENCE}/ReferencedSOPSequence/ReferencedSOPSequence": "a reference nested in a reference item, with "
    "its own content: not a DICOM structure (a quirk of the ANS dump); descriptions go in the content tree",
}
ANS_ONLY_PREFIXES = (f"{EVIDENCE}/ReferencedSOPSequence/ReferencedSOPSequence/",)
OURS_ONLY = {
    "IssuerOfAccessionNumberSequence": "the General Study module's accession issuer: the ANS KOS leaves "
    "the top-level AccessionNumber empty and names it only in the request",
    "IssuerOfAccessionNumberSequence/UniversalEntityID": "idem",
    "IssuerOfAccessionNumberSequence/UniversalEntityIDType": "idem",
    "SeriesDescription": "says what the series is in a PACS browser",
    "ContributingEquipmentSequence": "highdicom names itself as processing equipment (PS3.3 C.7.5.1)",
    f"{REQUEST_CODE}/CodeValue": "the exam act of the CDA (serviceEvent/code, LOINC); empty in the ANS KOS",
    f"{REQUEST_CODE}/CodingSchemeDesignator": "idem",
    f"{REQUEST_CODE}/CodeMeaning": "idem",
    "ContentTemplateSequence": "identifies TID 2010 (PS3.3 C.17.3, Content Template Sequence)",
    "ContentTemplateSequence/MappingResource": "idem",
    "ContentTemplateSequence/TemplateIdentifier": "idem",
}
OURS_ONLY_PREFIXES = ("ContributingEquipmentSequence/",)

DIFFERENT_VALUES = {
    "SpecificCharacterSet": ("ISO_IR 100", "ISO_IR 192", "UTF-8: French names beyond Latin-1 (Œ, œ) fit"),
    "AccessionNumber": ("", "ACN101", "type 2 in the General Study module; the KOS's exam has one"),
    "ConceptNameCodeSequence/CodeMeaning": ("MANIFEST", "Manifest", "the DCM code meaning (PS3.16 Annex D)"),
    "Manufacturer": ("ANS", "DRIMBOX", "the node makes it"),
    "StudyDescription": ("Examen A", "Scanner", "the PACS's own description of the study"),
}


def _xml_elements(node: etree._Element, prefix: str = "") -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for child in node:
        if child.tag not in ("element", "sequence"):
            continue
        tag = int(child.get("tag").replace(",", ""), 16)
        path = f"{prefix}{keyword_for_tag(tag)}"
        found[path].append((child.text or "").strip() if child.tag == "element" else "")
        if child.tag == "sequence":
            for item in child:
                for sub, values in _xml_elements(item, path + "/").items():
                    found[sub] += values
    return found


def _dataset_elements(ds: Dataset, prefix: str = "") -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for element in ds:
        path = f"{prefix}{element.keyword}"
        if element.VR == "SQ":
            found[path].append("")
            for item in element.value:
                for sub, values in _dataset_elements(item, path + "/").items():
                    found[sub] += values
        else:
            found[path].append("" if element.value is None else str(element.value))
    return found


def _series(uid: str, number: int, modality: str, sop_class: str, sop: str) -> SeriesInfo:
    identifier = Dataset()
    identifier.SeriesInstanceUID, identifier.SeriesNumber, identifier.Modality = uid, number, modality
    return SeriesInfo(
        uid,
        modality,
        identifier,
        (InstanceInfo(sop_class, sop, 1, *((512, 512) if sop_class == CT else (None, None))),),
    )


@pytest.fixture(scope="module")
def pair() -> tuple[dict[str, list[str]], dict[str, list[str]], Dataset]:
    spec = dataclasses.replace(
        report_spec("C-MDM"),
        study_instance_uid=STUDY_UID,
        accession_number="ACN101",
        placer_order="OPN101",
        modality="CT",
    )
    report = parse_report(sample_message("C-MDM", spec=spec))
    report = dataclasses.replace(report, patient=dataclasses.replace(report.patient, birth_place_code="63220"))
    identifier = Dataset()
    identifier.StudyInstanceUID, identifier.StudyDate, identifier.StudyTime = STUDY_UID, "20220822", "083117.658000"
    identifier.StudyDescription = "Scanner"
    walk = StudyInfo(
        STUDY_UID,
        identifier,
        (
            _series("1.2.250.1.213.4.5.2.2.101.201", 1000, "CT", CT, "1.2.250.1.213.4.5.2.3.101.201.31"),
            _series("1.2.250.1.213.4.5.2.2.101.202", 1001, "CT", CT, "1.2.250.1.213.4.5.2.3.101.202.31"),
            _series("1.2.250.1.213.4.5.2.2.101.299", 1003, "KO", KO, "1.2.250.1.213.4.5.2.3.101.299.31"),
        ),
    )
    kos = build_manifest(walk, report, series_retrieve_url(ROOT))
    ans = _xml_elements(etree.parse(str(KOS_DUMP)).getroot().find("data-set"))
    return ans, _dataset_elements(kos), kos


def test_attributes_only_in_the_ans_kos_are_the_explained_ones(pair: tuple) -> None:
    ans, ours, _kos = pair
    missing = {p for p in set(ans) - set(ours) if p not in ANS_ONLY and not p.startswith(ANS_ONLY_PREFIXES)}
    assert not missing, f"ANS KOS attributes we do not write, without a reason: {sorted(missing)}"


def test_attributes_only_in_ours_are_the_explained_ones(pair: tuple) -> None:
    ans, ours, _kos = pair
    extra = {p for p in set(ours) - set(ans) if p not in OURS_ONLY and not p.startswith(OURS_ONLY_PREFIXES)}
    assert not extra, f"attributes the ANS KOS does not have, without a reason: {sorted(extra)}"


@pytest.mark.parametrize(
    "path",
    [
        "SOPClassUID",
        "Modality",
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "IssuerOfPatientIDQualifiersSequence/UniversalEntityID",
        "IssuerOfPatientIDQualifiersSequence/UniversalEntityIDType",
        "PatientBirthDate",
        "PatientSex",
        "OtherPatientIDsSequence/PatientID",
        "OtherPatientIDsSequence/IssuerOfPatientID",
        "OtherPatientIDsSequence/TypeOfPatientID",
        "OtherPatientIDsSequence/IssuerOfPatientIDQualifiersSequence/UniversalEntityID",
        "PatientComments",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "ValueType",
        "ContinuityOfContent",
        "ConceptNameCodeSequence/CodeValue",
        "ConceptNameCodeSequence/CodingSchemeDesignator",
        "ReferencedRequestSequence/AccessionNumber",
        "ReferencedRequestSequence/IssuerOfAccessionNumberSequence/UniversalEntityID",
        "ReferencedRequestSequence/IssuerOfAccessionNumberSequence/UniversalEntityIDType",
        "ReferencedRequestSequence/StudyInstanceUID",
        "ReferencedRequestSequence/OrderPlacerIdentifierSequence/UniversalEntityID",
        "ReferencedRequestSequence/PlacerOrderNumberImagingServiceRequest",
        "ReferencedRequestSequence/RequestedProcedureID",
        "ReferencedRequestSequence/FillerOrderNumberImagingServiceRequest",
        "CurrentRequestedProcedureEvidenceSequence/StudyInstanceUID",
        f"{EVIDENCE}/SeriesInstanceUID",
        f"{EVIDENCE}/ReferencedSOPSequence/ReferencedSOPClassUID",
        "ContentSequence/ValueType",
        "ContentSequence/RelationshipType",
        "ContentSequence/ReferencedSOPSequence/ReferencedSOPInstanceUID",
        "InstitutionName",
        "TimezoneOffsetFromUTC",
        "ReferringPhysicianName",
    ],
)
def test_same_values(pair: tuple, path: str) -> None:
    ans, ours, _kos = pair
    expected = ans[path]
    if path == "ContentSequence/ValueType":  # our description item comes first, theirs last
        assert sorted(ours[path]) == sorted(expected)
    elif path == "TimezoneOffsetFromUTC":  # ANS KOS made in summer (+0200), our report is from January
        assert ours[path] == ["+0100"] and expected == ["+0200"]
    elif (
        path == "CurrentRequestedProcedureEvidenceSequence/ReferencedSeriesSequence/ReferencedSOPSequence/"
        "ReferencedSOPClassUID"
    ):
        assert ours[path] == expected[: len(ours[path])]  # theirs also lists the nested quirk's items
    else:
        assert ours[path] == expected, path


@pytest.mark.parametrize("path", sorted(DIFFERENT_VALUES))
def test_explained_value_differences(pair: tuple, path: str) -> None:
    ans, ours, _kos = pair
    theirs, mine, _why = DIFFERENT_VALUES[path]
    assert ans[path][0] == theirs
    assert ours[path][0] == mine


def test_other_patient_names(pair: tuple) -> None:
    """The ANS KOS writes two names (the used given name alone, then the used name); we write the used
    name (PID-5 type D), one of the forms the ANS cross-validator accepts (OK_CDA_KOS_OtherPatientName_*)."""
    ans, ours, _kos = pair
    assert ans["OtherPatientNames"] == ["^DOMINIQUE\\PAT-TROIS^DOMINIQUE"]
    assert ours["OtherPatientNames"] == ["PAT-TROIS^DOMINIQUE"]


def test_retrieve_urls_have_the_same_shape(pair: tuple) -> None:
    ans, ours, _kos = pair
    path = f"{EVIDENCE}/RetrieveURL"
    strip = [url.split("/studies/", 1)[1] for url in ans[path]]
    assert [url.split("/studies/", 1)[1] for url in ours[path]] == strip
    assert all(url.startswith(f"{ROOT}/studies/") for url in ours[path])


def test_key_object_description(pair: tuple) -> None:
    ans, ours, _kos = pair
    assert ans["ContentSequence/ConceptNameCodeSequence/CodeValue"] == ["113012"]
    assert "113012" in ours["ContentSequence/ConceptNameCodeSequence/CodeValue"]
