"""The second-read result as a DICOM Comprehensive SR (highdicom), and back.

Why an SR: the result goes to the L1 site and the programme only (no DMP document type exists for
it), and both keep DICOM: the SR is a machine-readable document of the *current study* (same
Study Instance UID, its own series), that any PACS stores next to the images and any DICOM tool
reads. Its content tree (``Comprehensive SR``, PS3.3 A.35.3), with standard codes wherever one exists:

.. code-block:: text

    CONTAINER (LN 24606-6 "MG Breast Screening")
      HAS OBS CONTEXT  observer = the L2 reader (TID 1002/1003: name, RPPS as login name)
      CONTAINS TEXT     (99DRIMBOX SRREQ "Second read request") = request id
      CONTAINS CODE     (99DRIMBOX DISCORD "Discordant readings") = SCT Yes / No
      CONTAINS CONTAINER (DCM 121072 "Impressions")            — one per reading, L1 then L2
        CONTAINS TEXT   (99DRIMBOX RANK "Reading rank") = "L1" | "L2"
        CONTAINS TEXT   (DCM 128775 "Identifier within Person Observer's Role") = RPPS
        CONTAINS PNAME  (DCM 121008 "Person Observer Name")
        CONTAINS DATE   (99DRIMBOX RDATE "Reading date")
        CONTAINS CONTAINER (SCT 363698007 "Finding Site")      — one per breast
          HAS CONCEPT MOD CODE (SCT 363698007 "Finding Site") = SCT 73056007 right / 80248007 left breast
          CONTAINS CODE (DCM 111005 "Assessment Category") = SCT 397140005 … 397145000 (ACR 1-5)
          CONTAINS CODE (DCM 111006 "Breast composition") = SCT 129716005 … 129719003 (A-D)
        CONTAINS CODE   (DCM 121075 "Recommendation") = DCM 111140 normal interval follow-up |
                        DCM 111591 recall for imaging findings | DCM 111590 recall for technical reasons
        CONTAINS TEXT   (DCM 121106 "Comment") = clinical notes

``99DRIMBOX`` is this project's private coding scheme (PS3.16 8.2: designators starting with ``99``)
for the three concepts no standard code names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from highdicom.sr import CodedConcept, RelationshipTypeValues
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from dicomweb_gateway.part10 import READ_ERRORS
from drimbox.screening.errors import ScreeningRefused
from drimbox.screening.model import BreastReading, Outcome, Reading

__all__ = ["COMPREHENSIVE_SR", "ResultDocument", "build_result_sr", "read_result_sr"]

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
_PRIVATE = "99DRIMBOX"
_TITLE = CodedConcept("24606-6", "LN", "MG Breast Screening")
_REQUEST = CodedConcept("SRREQ", _PRIVATE, "Second read request")
_DISCORDANT = CodedConcept("DISCORD", _PRIVATE, "Discordant readings")
_RANK = CodedConcept("RANK", _PRIVATE, "Reading rank")
_READING_DATE = CodedConcept("RDATE", _PRIVATE, "Reading date")
# SNOMED CT's "Mammography assessment (Category n) - …" concepts; their full meanings exceed the 64
# characters of a Code Meaning (LO), so the meanings here are shortened.
_CATEGORY_CODES = {
    1: CodedConcept("397140005", "SCT", "Mammography assessment (Category 1) - Negative"),
    2: CodedConcept("397141009", "SCT", "Mammography assessment (Category 2) - Benign"),
    3: CodedConcept("397143007", "SCT", "Mammography assessment (Category 3) - Probably benign"),
    4: CodedConcept("397144001", "SCT", "Mammography assessment (Category 4) - Suspicious"),
    5: CodedConcept("397145000", "SCT", "Mammography assessment (Category 5) - Highly suggestive"),
}
_DENSITY_CODES = {
    "A": codes.SCT.AlmostEntirelyFatBreastComposition,
    "B": CodedConcept("129717001", "SCT", "Scattered fibroglandular densities"),
    "C": codes.SCT.HeterogeneouslyDenseBreastComposition,
    "D": codes.SCT.ExtremelyDenseBreastComposition,
}
_SIDE_CODES = {"R": codes.SCT.RightBreast, "L": codes.SCT.LeftBreast}
_OUTCOME_CODES = {
    Outcome.NORMAL: codes.DCM.NormalIntervalFollowUp,
    Outcome.RECALL: codes.DCM.RecallForImagingFindings,
    Outcome.TECHNICAL_RECALL: codes.DCM.RecallForTechnicalReasons,
}
_CONTAINS = RelationshipTypeValues.CONTAINS
_MODIFIER = RelationshipTypeValues.HAS_CONCEPT_MOD


@dataclass(frozen=True, slots=True)
class ResultDocument:
    """What a result SR says."""

    request_id: str
    study_uid: str
    l1: Reading
    l2: Reading
    discordant: bool
    sop_instance_uid: str


def _breast(reading: BreastReading) -> hd.sr.ContainerContentItem:
    item = hd.sr.ContainerContentItem(codes.SCT.FindingSite, relationship_type=_CONTAINS)
    item.ContentSequence = hd.sr.ContentSequence([
        hd.sr.CodeContentItem(codes.SCT.FindingSite, _SIDE_CODES[reading.laterality], relationship_type=_MODIFIER),
        hd.sr.CodeContentItem(codes.DCM.AssessmentCategory, _CATEGORY_CODES[reading.category],
                              relationship_type=_CONTAINS),
        hd.sr.CodeContentItem(codes.DCM.BreastComposition, _DENSITY_CODES[reading.density],
                              relationship_type=_CONTAINS),
    ])
    return item


def _reading(rank: str, reading: Reading) -> hd.sr.ContainerContentItem:
    items: list[hd.sr.ContentItem] = [
        hd.sr.TextContentItem(_RANK, rank, relationship_type=_CONTAINS),
        hd.sr.TextContentItem(codes.DCM.IdentifierWithinPersonObserverRole, reading.reader_rpps,
                              relationship_type=_CONTAINS),
    ]
    if reading.reader_name:
        items.append(hd.sr.PnameContentItem(codes.DCM.PersonObserverName, reading.reader_name.replace(" ", "^"),
                                            relationship_type=_CONTAINS))
    items.append(hd.sr.DateContentItem(_READING_DATE, reading.date, relationship_type=_CONTAINS))
    items.extend(_breast(b) for b in reading.breasts)
    if reading.outcome is not None:
        items.append(hd.sr.CodeContentItem(codes.DCM.Recommendation, _OUTCOME_CODES[reading.outcome],
                                           relationship_type=_CONTAINS))
    if reading.notes:
        items.append(hd.sr.TextContentItem(codes.DCM.Comment, reading.notes, relationship_type=_CONTAINS))
    container = hd.sr.ContainerContentItem(codes.DCM.Impressions, relationship_type=_CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def build_result_sr(evidence: Sequence[Dataset], *, request_id: str, l1: Reading, l2: Reading, discordant: bool,
                    institution: str = "", manufacturer: str = "drimbox") -> Dataset:
    """The result SR of the current exam; ``evidence`` is its instances' headers (patient and study come from them).

    Raises
    ------
    ScreeningRefused
        ``l2`` has no outcome, or there is no evidence.
    """
    if l2.outcome is None:
        raise ScreeningRefused("the second reading needs an outcome (normal, recall, technical_recall)")
    if not evidence:
        raise ScreeningRefused("the result SR needs the exam's instances as evidence")
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=(l2.reader_name or f"RPPS {l2.reader_rpps}").replace(" ", "^"), login_name=l2.reader_rpps))
    root = hd.sr.ContainerContentItem(_TITLE, template_id=None)
    root.ContentSequence = hd.sr.ContentSequence([
        *hd.sr.ObservationContext(observer_person_context=observer),
        hd.sr.TextContentItem(_REQUEST, request_id, relationship_type=_CONTAINS),
        hd.sr.CodeContentItem(_DISCORDANT, codes.SCT.Yes if discordant else codes.SCT.No,
                              relationship_type=_CONTAINS),
        _reading("L1", l1),
        _reading("L2", l2),
    ])
    now = dt.datetime.now(dt.UTC)
    sr = hd.sr.ComprehensiveSR(
        evidence=list(evidence), content=root, series_instance_uid=generate_uid(), series_number=9901,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=manufacturer,
        institution_name=institution or None, is_complete=True, is_final=True, series_description="L2 second read",
        content_date=now.date(), content_time=now.time(),
    )
    if "OtherPatientIDsSequence" in evidence[0]:
        sr.OtherPatientIDsSequence = evidence[0].OtherPatientIDsSequence  # the INS, as the images carry it
    return sr


# -- reading it back -------------------------------------------------------------------------------------


def _name(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


def _code_value(item: Dataset) -> tuple[str, str]:
    code = item.ConceptCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


def _key(code: object) -> tuple[str, str]:
    return str(code.scheme_designator), str(code.value)  # type: ignore[attr-defined]


def _invert(table: dict[object, object]) -> dict[tuple[str, str], object]:
    return {_key(code): value for value, code in table.items()}


def _read_reading(container: Dataset) -> tuple[str, Reading]:
    fields: dict[str, object] = {"breasts": []}
    rank = ""
    categories, densities = _invert(_CATEGORY_CODES), _invert(_DENSITY_CODES)  # type: ignore[arg-type]
    sides, outcomes = _invert(_SIDE_CODES), _invert(_OUTCOME_CODES)  # type: ignore[arg-type]
    for item in container.get("ContentSequence", []):
        name = _name(item)
        if name == _key(_RANK):
            rank = str(item.TextValue)
        elif name == _key(codes.DCM.IdentifierWithinPersonObserverRole):
            fields["reader_rpps"] = str(item.TextValue)
        elif name == _key(codes.DCM.PersonObserverName):
            fields["reader_name"] = str(item.PersonName).replace("^", " ")
        elif name == _key(_READING_DATE):
            fields["date"] = dt.datetime.strptime(str(item.Date), "%Y%m%d").date()
        elif name == _key(codes.DCM.Recommendation):
            fields["outcome"] = outcomes[_code_value(item)]
        elif name == _key(codes.DCM.Comment):
            fields["notes"] = str(item.TextValue)
        elif name == _key(codes.SCT.FindingSite) and item.ValueType == "CONTAINER":
            breast: dict[str, object] = {}
            for sub in item.ContentSequence:
                sub_name = _name(sub)
                if sub_name == _key(codes.SCT.FindingSite):
                    breast["laterality"] = sides[_code_value(sub)]
                elif sub_name == _key(codes.DCM.AssessmentCategory):
                    breast["category"] = categories[_code_value(sub)]
                elif sub_name == _key(codes.DCM.BreastComposition):
                    breast["density"] = densities[_code_value(sub)]
            fields["breasts"].append(breast)  # type: ignore[attr-defined]
    return rank, Reading.model_validate(fields)


def read_result_sr(ds: Dataset) -> ResultDocument:
    """The readings, request and discordance a result SR (:func:`build_result_sr`) carries.

    Raises
    ------
    ScreeningRefused
        Not such a document (another title, a reading missing, codes not understood).
    """
    try:
        if str(ds.get("SOPClassUID", "")) != COMPREHENSIVE_SR:
            raise ScreeningRefused("the result is not a Comprehensive SR")
        if _name(ds) != _key(_TITLE):
            raise ScreeningRefused("the SR is not an MG breast screening result (title LN 24606-6)")
        readings: dict[str, Reading] = {}
        request_id, discordant = "", False
        for item in ds.ContentSequence:
            name = _name(item)
            if name == _key(_REQUEST):
                request_id = str(item.TextValue)
            elif name == _key(_DISCORDANT):
                discordant = _code_value(item) == _key(codes.SCT.Yes)
            elif name == _key(codes.DCM.Impressions):
                rank, reading = _read_reading(item)
                readings[rank] = reading
        if set(readings) != {"L1", "L2"} or not request_id:
            raise ScreeningRefused("the result SR must carry the request id and both readings (L1, L2)")
        return ResultDocument(request_id=request_id, study_uid=str(ds.StudyInstanceUID), l1=readings["L1"],
                              l2=readings["L2"], discordant=discordant, sop_instance_uid=str(ds.SOPInstanceUID))
    except READ_ERRORS as exc:  # a tree not as built here, or hostile bytes read lazily
        if isinstance(exc, ScreeningRefused):
            raise
        raise ScreeningRefused(f"the result SR cannot be read: {type(exc).__name__}: {exc}") from exc
