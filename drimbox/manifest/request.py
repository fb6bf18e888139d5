"""The request a manifest fulfils: ReferencedRequestSequence (PS3.3 C.17.2, SR Document General).

One item: the accession number with its issuer (IssuerOfAccessionNumberSequence, ISO OID), the
Study Instance UID, the requested procedure (the exam act of the CDA ``serviceEvent/code``, LOINC),
and the placer order number with its issuer — the layout of the ANS KOS. Type 2 attributes the
node does not know are present and empty.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.sequence import Sequence

from drimbox.reports import CodedValue, ImagingReport

__all__ = ["issuer_sequence", "requested_procedure_code", "request_item"]

_SCHEMES = {"2.16.840.1.113883.6.1": "LN", "2.16.840.1.113883.6.96": "SCT", "1.2.840.10008.2.16.4": "DCM"}
"""Coding system OID (CDA) → Coding Scheme Designator (PS3.16 Table 8-1)."""


def issuer_sequence(oid: str) -> Sequence:
    """An HL7v2 Hierarchic Designator macro item (PS3.3 10.14) naming ``oid`` as an ISO OID."""
    item = Dataset()
    item.UniversalEntityID = oid
    item.UniversalEntityIDType = "ISO"
    return Sequence([item])


def requested_procedure_code(code: CodedValue) -> Dataset | None:
    """A Code Sequence item for a CDA code whose system has a DICOM designator, else ``None``."""
    scheme = _SCHEMES.get(code.system)
    if scheme is None or not code.code:
        return None
    item = Dataset()
    item.CodeValue = code.code
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = (code.display or code.code)[:64]  # LO
    return item


def request_item(report: ImagingReport, study_instance_uid: str) -> Dataset:
    """The ReferencedRequestSequence item of the manifest of ``report``'s exam."""
    item = Dataset()
    item.AccessionNumber = report.accession_number
    if report.accession_issuer:
        item.IssuerOfAccessionNumberSequence = issuer_sequence(report.accession_issuer)
    item.ReferencedStudySequence = Sequence()
    item.StudyInstanceUID = study_instance_uid
    act = report.exam_codes[0] if report.exam_codes else None
    item.RequestedProcedureDescription = (act.display if act else "")[:64]
    code = requested_procedure_code(act) if act else None
    item.RequestedProcedureCodeSequence = Sequence([code] if code is not None else [])
    item.RequestedProcedureID = ""
    item.PlacerOrderNumberImagingServiceRequest = (report.order_id or "")[:64]
    if report.order_id and report.order_issuer:
        item.OrderPlacerIdentifierSequence = issuer_sequence(report.order_issuer)
    item.FillerOrderNumberImagingServiceRequest = ""
    return item
