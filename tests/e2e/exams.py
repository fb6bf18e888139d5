"""Test helper: the :class:`Exam` of a published KOS, read from the registry's MHD view.

The consumer's directory (ITI-18/43) is built elsewhere; these tests only need the exam a KOS
describes, so they read the KOS with MHD (``DocumentReference`` by INS, then ``Binary``) and parse
RetrieveURLs and instances with pydicom.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import httpx
import pydicom
from pydicom import Dataset

from drimbox.retrieve.model import Exam, InstanceRef, SeriesRef
from drimbox.testdata.identity import Patient


def exam_from_kos(kos: Dataset, *, entry_uuid: str = "", repository: str = "") -> Exam:
    """The exam a KOS describes (first study of its evidence)."""
    study = kos.CurrentRequestedProcedureEvidenceSequence[0]
    series = tuple(
        SeriesRef(series_uid=str(s.SeriesInstanceUID), retrieve_url=str(s.RetrieveURL),
                  instances=tuple(InstanceRef(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID))
                                  for i in s.ReferencedSOPSequence))
        for s in study.ReferencedSeriesSequence
    )
    return Exam(kos_uid=str(kos.SOPInstanceUID), entry_uuid=entry_uuid, repository_unique_id=repository,
                study_uid=str(study.StudyInstanceUID), accession_number=str(kos.get("AccessionNumber", "")) or None,
                performed=None, modalities=(), description=str(kos.get("StudyDescription", "")), body_part="",
                source_site="site-a", series=series)


def published_kos(fhir: str, token: str, patient: Patient) -> list[tuple[Dataset, dict[str, Any]]]:
    """Every current KOS of ``patient`` in the registry, with its DocumentReference."""
    out: list[tuple[Dataset, dict[str, Any]]] = []
    with httpx.Client(timeout=20, headers={"Authorization": f"Bearer {token}"}) as client:
        bundle = client.get(f"{fhir}/DocumentReference",
                            params={"patient.identifier": f"urn:oid:{patient.ins_oid}|{patient.ins}"})
        bundle.raise_for_status()
        for entry in bundle.json().get("entry", []):
            resource = entry["resource"]
            attachment = resource["content"][0]["attachment"]
            if attachment["contentType"] != "application/dicom" or resource.get("status") != "current":
                continue
            blob = client.get(attachment["url"])
            blob.raise_for_status()
            out.append((pydicom.dcmread(io.BytesIO(blob.content)), resource))
    return out


def published_exams(fhir: str, token: str, patient: Patient) -> list[Exam]:
    """The exams of ``patient`` published to the registry."""
    return [exam_from_kos(kos, entry_uuid=str(doc.get("id", ""))) for kos, doc in published_kos(fhir, token, patient)]


def with_series(exam: Exam, *series: SeriesRef) -> Exam:
    """``exam`` restricted to (or extended with) other series."""
    return replace(exam, series=tuple(series))
