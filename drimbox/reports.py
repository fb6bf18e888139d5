"""The validated imaging report, as the RIS announces it (DESIGN F1), in the node's own terms.

The HL7v2 parser (:mod:`drimbox.hl7`) produces an :class:`ImagingReport`; the KOS builder
(:mod:`drimbox.manifest`) and the XDS.b client (:mod:`drimbox.publish`) consume it. It carries
nothing HL7-specific: an update is recognised by the CDA's ``setId``/``versionNumber``, not by the
message's event code (the ANS update ORU carries ORC NW and OBX-11 F like a new report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "CodedValue",
    "IdentityStatus",
    "ImagingReport",
    "Organisation",
    "PatientIdentity",
    "Practitioner",
    "ReportAction",
    "Visibility",
]

INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_NIR_TEST_OID = "1.2.250.1.213.1.4.10"
INS_NIR_DEMO_OID = "1.2.250.1.213.1.4.11"


class ReportAction(StrEnum):
    """What the message asks the node to do with the exam's publication."""

    PUBLISH = "publish"
    """A new report (ORU^R01 / MDM^T02), or a new version of one (same setId, higher versionNumber)."""
    WITHDRAW = "withdraw"
    """The report is withdrawn (MDM^T04, ORC CA / OBX-11 D): deprecate the published KOS."""


class IdentityStatus(StrEnum):
    """PID-32 identity reliability; only a qualified identity may carry the INS (DESIGN F1)."""

    QUALIFIED = "VALI"
    RECOVERED = "RECUP"
    PROVISIONAL = "PROV"
    NOT_YET_QUALIFIED = "VIDE"
    """No identity qualification recorded yet (PID-32 VIDE)."""
    UNKNOWN = ""


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    """The patient as the RIS identifies them.

    ``ins`` is set only when ``status`` is QUALIFIED (the INS may be used only for a qualified
    identity); ``ipp`` is the site's local patient id with its assigning authority.
    """

    ipp: str
    ipp_authority: str
    ipp_authority_oid: str | None
    birth_family_name: str
    given_names: tuple[str, ...]
    birth_date: str
    """YYYYMMDD."""
    sex: str
    """M, F or U (administrative sex)."""
    status: IdentityStatus
    ins: str | None = None
    ins_oid: str | None = None
    used_family_name: str | None = None
    birth_place_code: str | None = None
    """INSEE code of the birth place (PID-11 type BDL)."""
    used_given_name: str | None = None
    """Prénom utilisé (PID-5 repetition of type D, component 2), when the RIS sends one."""

    @property
    def first_given_name(self) -> str:
        return self.given_names[0] if self.given_names else ""


@dataclass(frozen=True, slots=True)
class Practitioner:
    """A health professional identified nationally: ``id_nat_ps`` = ``8`` + RPPS."""

    id_nat_ps: str
    family_name: str
    given_name: str
    prefix: str | None = None

    @property
    def rpps(self) -> str:
        """The 11-digit RPPS number (IdNatPS without its leading type digit ``8``)."""
        return self.id_nat_ps[1:] if self.id_nat_ps.startswith("8") else self.id_nat_ps


@dataclass(frozen=True, slots=True)
class Organisation:
    """The healthcare organisation that produced the exam (IdNatStruct, e.g. ``1`` + FINESS)."""

    name: str
    id_nat_struct: str


@dataclass(frozen=True, slots=True)
class Visibility:
    """DMP visibility flags from the OBX MetaDMPMSS segments (DESIGN F1)."""

    masked_to_professionals: bool = False
    invisible_to_patient: bool = False
    invisible_to_legal_representatives: bool = False
    to_dmp: bool = True
    secret_connection: bool = False
    """CONNEXION_SECRETE: the document belongs to a "connexion secrète" stay."""
    confidentiality_modified: bool = False
    """MODIF_CONF_CODE: the confidentiality flags differ from the previous version's."""
    to_mssante_professionals: bool = False
    """DESTMSSANTEPS: also send to health professionals over MSSanté (not the node's job)."""
    to_mssante_patient: bool = False
    """DESTMSSANTEPAT: also send to the patient's MSSanté mailbox (not the node's job)."""
    ack_reception: bool = False
    """ACK_RECEPTION: the sender asks for an MSSanté reception acknowledgement."""
    ack_reading: bool = False
    """ACK_LECTURE_MSS: the sender asks for an MSSanté reading acknowledgement."""


@dataclass(frozen=True, slots=True)
class CodedValue:
    """A coded value of the CDA header (CD/CE data type): code, code system OID, display name."""

    code: str
    system: str
    display: str = ""


@dataclass(frozen=True, slots=True)
class ImagingReport:
    """One validated report and the exam it describes.

    Identity of the *exam* for idempotence: (``study_instance_uid``, ``accession_number``); identity
    of the *report version*: (``set_id``, ``version_number``).
    """

    action: ReportAction
    message_control_id: str
    patient: PatientIdentity
    study_instance_uid: str
    accession_number: str
    set_id: str
    version_number: int
    document_id: str
    """The CDA document's own id (root[^extension])."""
    title: str
    effective_time: datetime
    """When the report was authored (aware, UTC)."""
    author: Practitioner
    organisation: Organisation
    legal_authenticator: Practitioner | None = None
    visibility: Visibility = field(default_factory=Visibility)
    service_start: datetime | None = None
    service_stop: datetime | None = None
    accession_issuer: str | None = None
    order_id: str | None = None
    cda: bytes = field(default=b"", repr=False)
    """The CDA R2 document as received (XML bytes, decoded from OBX-5 base64)."""
    message_type: str = ""
    """MSH-9 as ``code^trigger`` (``ORU^R01``, ``MDM^T02``, ``MDM^T10``, ``MDM^T04``), for audit."""
    parent_document_id: str | None = None
    """The document this version replaces (CDA ``relatedDocument[@typeCode=RPLC]``, else TXA-13)."""
    custodian: Organisation | None = None
    """The organisation keeping the document (CDA ``custodian``)."""
    sender: Practitioner | None = None
    """The professional on whose behalf the message was sent (PRT-5 of the PRT ``SB`` participation)."""
    sender_organisation: Organisation | None = None
    """The structure behind the sending (PRT-8 of the PRT ``SB`` participation, IdNatStruct)."""
    language_code: str | None = None
    """CDA ``languageCode`` (``fr-FR``)."""
    confidentiality_code: CodedValue | None = None
    """CDA ``confidentialityCode`` (HL7 v3 Confidentiality, ``N`` normally)."""
    document_code: CodedValue | None = None
    """CDA ``code`` (LOINC ``18748-4``); its first translation is in :attr:`exam_codes` too."""
    exam_codes: tuple[CodedValue, ...] = ()
    """``serviceEvent/code`` and its translations: exam act (LOINC, CCAM), modality (DCM), region (SNOMED CT)."""
    practice_setting: CodedValue | None = None
    """The author organisation's ``standardIndustryClassCode`` (XDS practiceSettingCode)."""
    healthcare_facility_type: CodedValue | None = None
    """``componentOf/encompassingEncounter/location/healthCareFacility/code`` (XDS healthcareFacilityTypeCode)."""
    order_issuer: str | None = None
    """Issuer (OID) of :attr:`order_id`, the placer order number (CDA ``inFulfillmentOf/order/id/@root``)."""
