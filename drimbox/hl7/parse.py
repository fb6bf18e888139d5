"""ORU^R01 / MDM^T02, T10, T04 → :class:`~drimbox.reports.ImagingReport` (DESIGN F1).

Which message means what:

======================  =======================  ==============================================
message                 ORC-1 / OBX-11           action
======================  =======================  ==============================================
ORU^R01, MDM^T02        NW, F                    publish (a new report)
MDM^T10, ORU^R01        RO or NW, C or F         publish; an *update* is recognised downstream
                                                 by the CDA setId/versionNumber (the ANS update
                                                 ORU carries ORC NW and OBX-11 F)
MDM^T04, any            CA, D                    withdraw (deprecate the published manifest)
======================  =======================  ==============================================

MDM^T04 (HL7 v2.5 §9.6.4, "document status change notification and content"), ORC-1 ``CA``
(cancel) or ``OC`` (order cancelled) on any ORC, or OBX-11 ``D`` (delete, table 0085) on the report
OBX withdraw. Everything else about the exam comes from the CDA: MDM messages carry no accession
number in OBR, and no segment carries the Study Instance UID.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import NoReturn

import structlog

from drimbox.hl7.cda import CdaHeader, read_cda
from drimbox.hl7.errors import (
    ApplicationInternalError,
    ErrorLocation,
    RequiredFieldMissing,
    SegmentSequenceError,
    UnsupportedEventCode,
    UnsupportedMessageType,
    UnsupportedVersion,
)
from drimbox.hl7.header import MessageHeader
from drimbox.hl7.message import ParsedMessage, Segment, decode_message
from drimbox.hl7.observations import decode_report_document, find_report_obx, read_visibility
from drimbox.hl7.participants import read_sender
from drimbox.hl7.patient import INS_OIDS, read_patient
from drimbox.hl7.timestamps import PARIS
from drimbox.reports import ImagingReport, PatientIdentity, ReportAction

__all__ = ["SUPPORTED_EVENTS", "check_header", "parse_report"]

log = structlog.get_logger(__name__)
_value = ParsedMessage.value

SUPPORTED_EVENTS = {"ORU": frozenset({"R01"}), "MDM": frozenset({"T02", "T04", "T10"})}
"""Message code (MSH-9.1) → trigger events (MSH-9.2) the node takes."""

_WITHDRAW_ORDER_CONTROLS = frozenset({"CA", "OC"})


def check_header(header: MessageHeader) -> None:
    """Refuse what the node does not take, before reading the body (HL7 v2.5 §2.9.2 step 1).

    Raises
    ------
    UnsupportedVersion
        MSH-12 is not a 2.x version (203).
    UnsupportedMessageType, UnsupportedEventCode
        MSH-9 is not one of :data:`SUPPORTED_EVENTS` (200, 201).
    RequiredFieldMissing
        MSH-10 (message control id) is empty (101).
    """
    version = header.version
    parts = version.split(".")
    if len(parts) < 2 or parts[0] != "2" or not all(p.isdigit() for p in parts):
        raise UnsupportedVersion(
            f"MSH-12 version {version!r} is not an HL7 v2 version (2.3 to 2.9)",
            ErrorLocation("MSH", field=12, component=1),
        )
    events = SUPPORTED_EVENTS.get(header.message_code)
    if events is None:
        raise UnsupportedMessageType(
            f"message type {header.message_code!r} is not taken: ORU^R01 or MDM^T02/T04/T10 only",
            ErrorLocation("MSH", field=9, component=1),
        )
    if header.trigger_event not in events:
        raise UnsupportedEventCode(
            f"{header.message_code}^{header.trigger_event} is not taken: "
            f"{header.message_code}^{'/'.join(sorted(events))} only",
            ErrorLocation("MSH", field=9, component=2),
        )
    if not header.control_id.strip():
        raise RequiredFieldMissing("MSH-10 message control id is empty", ErrorLocation("MSH", field=10))


def _action(message: ParsedMessage, report_obx: Segment) -> ReportAction:
    header = message.header
    if header.message_code == "MDM" and header.trigger_event == "T04":
        return ReportAction.WITHDRAW
    if any(_value(orc, 1).upper() in _WITHDRAW_ORDER_CONTROLS for _, orc in message.all("ORC")):
        return ReportAction.WITHDRAW
    if _value(report_obx, 11).upper() == "D":
        return ReportAction.WITHDRAW
    return ReportAction.PUBLISH


def _check_same_patient(patient: PatientIdentity, cda: CdaHeader, location: ErrorLocation) -> None:
    """A report about someone else than the PID patient must never be published under that INS."""
    if patient.ins is None:
        return
    cda_ins = {ext.upper() for root, ext in cda.patient_ids if root in INS_OIDS and ext}
    if cda_ins and patient.ins not in cda_ins:
        raise ApplicationInternalError(
            f"the CDA recordTarget INS ({', '.join(sorted(cda_ins))}) differs from the PID-3 INS {patient.ins}",
            location,
        )


def _accession(message: ParsedMessage, cda: CdaHeader, location: ErrorLocation) -> str:
    if cda.accession_number:
        return cda.accession_number
    # A report without accessionNumber: IHE RAD puts the accession in OBR-18 (Placer Field 1),
    # and the ANS ORU samples also in OBR-3 (Filler Order Number).
    obr = message.first("OBR")
    fallback = (_value(obr, 18) or _value(obr, 3)) if obr is not None else ""
    if fallback:
        log.info("accession number taken from OBR (absent from the CDA)", accession=fallback)
        return fallback
    raise RequiredFieldMissing("no accession number: neither inFulfillmentOf/order in the CDA nor OBR-18", location)


def _parent_document(message: ParsedMessage, cda: CdaHeader) -> str | None:
    if cda.parent_document_id:
        return cda.parent_document_id
    txa = message.first("TXA")
    return (_value(txa, 13) or None) if txa is not None else None


def parse_report(data: bytes, *, default_zone: tzinfo = PARIS) -> ImagingReport:
    """Parse one report message (the MLLP payload) into an :class:`~drimbox.reports.ImagingReport`.

    Parameters
    ----------
    data
        One HL7 v2 message, segments separated by CR (CRLF and LF tolerated), in the character set
        of MSH-18.
    default_zone
        Zone of CDA timestamps that carry no UTC offset.

    Returns
    -------
    ImagingReport
        Patient from PID, report and exam from the CDA, visibility from the MetaDMPMSS OBX, sender
        from PRT ``SB``, action from MSH-9/ORC-1/OBX-11.

    Raises
    ------
    Hl7Error
        Every refusal, with its HL7 table 0357 code and location (see :mod:`drimbox.hl7.errors`).
    """
    message = decode_message(data)
    check_header(message.header)
    pid = message.first("PID")
    if pid is None:
        raise SegmentSequenceError("the message has no PID segment", ErrorLocation("PID"))
    patient = read_patient(pid)
    sequence, obx = find_report_obx(message)
    location = ErrorLocation("OBX", sequence, 5, component=5)
    document = decode_report_document(obx, sequence)
    cda = read_cda(document, location, default_zone=default_zone)
    _check_same_patient(patient, cda, location)
    txa = message.first("TXA")
    if txa is not None and _value(txa, 12) and _value(txa, 12) != cda.document_id:
        log.warning(
            "TXA-12 differs from the CDA document id; the CDA is kept", txa_12=_value(txa, 12), cda_id=cda.document_id
        )
    sender, sender_organisation = read_sender(message)
    return ImagingReport(
        action=_action(message, obx),
        message_control_id=message.header.control_id,
        patient=patient,
        study_instance_uid=cda.study_instance_uid,
        accession_number=_accession(message, cda, location),
        set_id=cda.set_id,
        version_number=cda.version_number,
        document_id=cda.document_id,
        title=cda.title,
        effective_time=cda.effective_time,
        author=cda.author,
        organisation=cda.organisation or cda.custodian or _missing_organisation(location),
        legal_authenticator=cda.legal_authenticator,
        visibility=read_visibility(message),
        service_start=cda.service_start,
        service_stop=cda.service_stop,
        accession_issuer=cda.accession_issuer,
        order_id=cda.order_id,
        order_issuer=cda.order_issuer,
        cda=document,
        message_type=message.header.message_type,
        parent_document_id=_parent_document(message, cda),
        custodian=cda.custodian,
        sender=sender,
        sender_organisation=sender_organisation,
        language_code=cda.language_code,
        confidentiality_code=cda.confidentiality_code,
        document_code=cda.document_code,
        exam_codes=cda.exam_codes,
        practice_setting=cda.practice_setting,
        healthcare_facility_type=cda.healthcare_facility_type,
    )


def _missing_organisation(location: ErrorLocation) -> NoReturn:
    raise RequiredFieldMissing(
        "CDA report: no organisation with an IdNatStruct (author representedOrganization or custodian)", location
    )
