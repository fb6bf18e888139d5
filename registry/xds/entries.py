"""The registry's view of submitted metadata once validated: flat, typed, ready to store."""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.xds.ebrim import Association, RegistryObject
from registry.xds.hl7 import ReferenceId, Xcn, Xon

__all__ = ["Code", "DocumentEntry", "SubmissionSet", "ValidatedSubmission"]


@dataclass(frozen=True, slots=True)
class Code:
    """A coded value: ``nodeRepresentation``, its ``codingScheme`` and display name."""

    code: str
    scheme: str
    display: str = ""


@dataclass
class SubmissionSet:
    """An XDSSubmissionSet (ITI TF-3 §4.2.3.3)."""

    source: RegistryObject
    unique_id: str
    source_id: str
    patient_id: str
    submission_time: str
    content_type: Code
    authors: list[Xcn]
    institutions: list[Xon]


@dataclass
class DocumentEntry:
    """An XDSDocumentEntry (ITI TF-3 §4.2.3.2) with the attributes the registry indexes."""

    source: RegistryObject
    unique_id: str
    patient_id: str
    mime_type: str
    class_code: Code
    type_code: Code
    format_code: Code
    facility_type: Code
    practice_setting: Code
    creation_time: str
    service_start_time: str | None
    service_stop_time: str | None
    language_code: str
    title: str
    confidentiality: list[Code]
    event_codes: list[Code]
    authors: list[Xcn]
    institutions: list[Xon]
    legal_authenticator: Xcn | None
    reference_ids: list[ReferenceId]
    declared_hash: str | None
    declared_size: int | None
    is_signature: bool
    content: bytes = b""
    """The document bytes (from the MTOM part or inline base64)."""

    @property
    def symbolic_id(self) -> str:
        """The id the submission gave the ExtrinsicObject."""
        return self.source.id


@dataclass
class ValidatedSubmission:
    """An ITI-41 submission that passed every metadata rule."""

    submission_set: SubmissionSet
    documents: list[DocumentEntry]
    associations: list[Association]
    replaces: dict[str, str] = field(default_factory=dict)
    """RPLC: symbolic id of the new document → entryUUID of the document it replaces."""

    @property
    def signature(self) -> DocumentEntry | None:
        """The DSG signature document (source of the ``signs`` association)."""
        return next((d for d in self.documents if d.is_signature), None)
