"""The consumer side of the network: registry look-up (F6), retrieval from source nodes (F7), import
into the local PACS (F8), remote studies in the viewer (F9), XDM (F10)."""

from drimbox.retrieve.model import (
    Actor,
    Exam,
    ExamDirectory,
    InstanceRef,
    PatientRecord,
    PatientTraits,
    RelatedDocument,
    RetrievalProgress,
    RetrievalReport,
    SeriesRef,
)

__all__ = [
    "Actor",
    "Exam",
    "ExamDirectory",
    "InstanceRef",
    "PatientRecord",
    "PatientTraits",
    "RelatedDocument",
    "RetrievalProgress",
    "RetrievalReport",
    "SeriesRef",
]
