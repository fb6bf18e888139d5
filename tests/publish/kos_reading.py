"""Reading back what a published KOS references."""

from __future__ import annotations

from io import BytesIO

from pydicom import dcmread


def referenced_instances(kos: bytes) -> set[str]:
    """Every SOP Instance UID a KOS references (CurrentRequestedProcedureEvidenceSequence)."""
    ds = dcmread(BytesIO(kos))
    return {ref.ReferencedSOPInstanceUID for ev in ds.CurrentRequestedProcedureEvidenceSequence
            for series in ev.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}


def retrieve_urls(kos: bytes) -> set[str]:
    """The RetrieveURL of every referenced series."""
    ds = dcmread(BytesIO(kos))
    return {str(series.RetrieveURL) for ev in ds.CurrentRequestedProcedureEvidenceSequence
            for series in ev.ReferencedSeriesSequence}
