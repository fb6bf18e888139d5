"""Reading a KOS (Key Object Selection Document) read from the registry into what the consumer shows.

A KOS comes from another site, through the registry: it is *input from the network* and is read
defensively. Anything that makes it unusable (not DICOM, another SOP class, no study, a manifest
series without RetrieveURL, a series without instances) raises :class:`MalformedKos` naming the
problem, so that the directory skips that one document and shows the rest (DESIGN F6).

Two kinds of KOS are read the same way and told apart by their document title
(``ConceptNameCodeSequence``):

- the **imaging manifest** (113030, DCM, "Manifest"): every series of the exam, each with the
  WADO-RS RetrieveURL (0008,1190) of the source node and its ``ReferencedSOPSequence``;
- a **key-image note** (any other title, e.g. 113000 "Of Interest"): the instances a radiologist
  selected; its RetrieveURLs are not required (the manifest of the same study says where to fetch).

Only the evidence of the KOS's own study is taken (a manifest describes one study); references to
other studies are left out and logged.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import pydicom
import structlog
from pydicom import Dataset

from dicomweb_gateway.part10 import READ_ERRORS, length_problem
from drimbox.errors import DrimboxError
from drimbox.retrieve.model import InstanceRef, SeriesRef

__all__ = [
    "KOS_SOP_CLASS",
    "MANIFEST_TITLE",
    "KosContent",
    "MalformedKos",
    "modality_of_sop_class",
    "read_kos",
]

log = structlog.get_logger(__name__)

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
MANIFEST_TITLE = "113030"
"""DCM code of the document title "Manifest" (PS3.16 CID 7010)."""

_STORAGE = "1.2.840.10008.5.1.4.1.1."
# Storage SOP classes → modality, for the modality of a series when the registry entry gives none
# (a KOS does not carry the Modality of the series it references). PS3.4 Annex B.5.
_SOP_MODALITY: dict[str, str] = {
    "1": "CR", "1.1": "DX", "1.1.1": "DX", "1.2": "MG", "1.2.1": "MG", "1.3": "IO", "1.3.1": "IO",
    "13.1.3": "MG", "13.1.4": "MG", "13.1.5": "MG",
    "2": "CT", "2.1": "CT", "2.2": "CT", "4": "MR", "4.1": "MR", "4.4": "MR", "6.1": "US", "6.2": "US",
    "3.1": "US", "7": "OT", "7.1": "OT", "7.2": "OT", "7.3": "OT", "7.4": "OT", "12.1": "XA", "12.1.1": "XA",
    "12.2": "RF", "12.2.1": "RF", "20": "NM", "128": "PT", "130": "PT", "481.1": "RTIMAGE",
    "88.59": "KO", "11.1": "PR", "104.1": "DOC", "77.1.4": "XC", "77.1.1": "ES", "77.1.2": "SM", "77.1.6": "SM",
    "88.22": "SR", "88.33": "SR", "88.11": "SR",
}
_OFFSET = re.compile(r"^([+-])(\d{2})(\d{2})$")


def modality_of_sop_class(sop_class_uid: str) -> str | None:
    """The usual modality of a storage SOP class (``None`` when unknown)."""
    if not sop_class_uid.startswith(_STORAGE):
        return None
    return _SOP_MODALITY.get(sop_class_uid[len(_STORAGE):])


class MalformedKos(DrimboxError, ValueError):
    """A KOS from the network that cannot be used; the message says why (shown to operators)."""


@dataclass(frozen=True, slots=True)
class KosContent:
    """What one KOS says: its title, its study, and the series and instances it references."""

    sop_instance_uid: str
    title_code: str
    """Code value of the document title (``113030`` for a manifest)."""
    title_meaning: str
    study_uid: str
    accession_number: str | None
    performed: datetime | None
    """StudyDate/StudyTime as an aware datetime (TimezoneOffsetFromUTC when given, else the reader's zone)."""
    study_description: str
    institution: str
    """InstitutionName of the KOS (may carry HL7 components, as in the ANS dump: first one kept)."""
    series: tuple[SeriesRef, ...]

    @property
    def is_manifest(self) -> bool:
        return self.title_code == MANIFEST_TITLE

    @property
    def instances(self) -> tuple[InstanceRef, ...]:
        """Every instance referenced, in KOS order."""
        return tuple(i for s in self.series for i in s.instances)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities of the referenced images (from their SOP classes; KO/PR/SR/DOC left out)."""
        found = (s.modality for s in self.series)
        return tuple(dict.fromkeys(m for m in found if m and m not in {"KO", "PR", "SR", "DOC"}))


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _zone_of(offset: str, default: tzinfo) -> tzinfo:
    match = _OFFSET.match(offset.strip())
    if not match:
        return default
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if sign == "-" else delta)


def _performed(ds: Dataset, zone: tzinfo) -> datetime | None:
    day = _text(ds, "StudyDate")
    if len(day) != 8 or not day.isdigit():
        return None
    clock = _text(ds, "StudyTime").split(".")[0].ljust(6, "0")[:6]
    if not clock.isdigit():
        clock = "000000"
    try:
        naive = datetime.strptime(day + clock, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return naive.replace(tzinfo=_zone_of(_text(ds, "TimezoneOffsetFromUTC"), zone)).astimezone(UTC)


def _sequence(ds: Dataset, keyword: str) -> list[Dataset]:
    value: Any = ds.get(keyword)
    return list(value) if value else []


def _series(item: Dataset, index: int, *, require_url: bool) -> SeriesRef:
    series_uid = _text(item, "SeriesInstanceUID")
    if not series_uid:
        raise MalformedKos(f"referenced series #{index} has no SeriesInstanceUID")
    url = _text(item, "RetrieveURL")
    if require_url and not url.lower().startswith(("http://", "https://")):
        raise MalformedKos(f"series {series_uid} has no usable RetrieveURL (0008,1190): {url!r}")
    instances = []
    for ref in _sequence(item, "ReferencedSOPSequence"):
        sop_class, sop_instance = _text(ref, "ReferencedSOPClassUID"), _text(ref, "ReferencedSOPInstanceUID")
        if not sop_class or not sop_instance:
            raise MalformedKos(f"series {series_uid}: a ReferencedSOPSequence item lacks its SOP class or instance UID")
        instances.append(InstanceRef(sop_class, sop_instance))
    if not instances:
        raise MalformedKos(f"series {series_uid} references no instance")
    modalities = {modality_of_sop_class(i.sop_class_uid) for i in instances}
    modality = modalities.pop() if len(modalities) == 1 else None
    return SeriesRef(series_uid=series_uid, retrieve_url=url, instances=tuple(instances), modality=modality)


def _dataset(data: bytes | Dataset) -> Dataset:
    if isinstance(data, Dataset):
        return data
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
    except READ_ERRORS as exc:
        raise MalformedKos(f"not a DICOM file ({type(exc).__name__}: {exc})") from exc
    # pydicom reads a value shorter than its declared length as it is: refuse a cut or lying file.
    problem = length_problem(io.BytesIO(data), len(data), ds)
    if problem is not None:
        raise MalformedKos(f"corrupt DICOM file: {problem}")
    return ds


def read_kos(data: bytes | Dataset, *, zone: tzinfo = UTC) -> KosContent:
    """Read one KOS (its bytes as ITI-43 returns them, or a dataset).

    ``zone`` is the zone of the KOS's DICOM dates when it has no TimezoneOffsetFromUTC (the
    consumer's best guess; the registry entry's serviceStartTime in UTC is preferred by callers).

    Raises
    ------
    MalformedKos
        Not DICOM, not a KOS, no study, or a series the consumer could not retrieve (see module docstring).
    """
    ds = _dataset(data)
    try:
        return _read(ds, zone)
    except MalformedKos:
        raise
    except READ_ERRORS as exc:  # pydicom decoding of bad values
        raise MalformedKos(f"unreadable KOS ({type(exc).__name__}: {exc})") from exc


def _read(ds: Dataset, zone: tzinfo) -> KosContent:
    sop_class = _text(ds, "SOPClassUID")
    if sop_class != KOS_SOP_CLASS:
        raise MalformedKos(f"SOP Class {sop_class or '(none)'} is not Key Object Selection ({KOS_SOP_CLASS})")
    sop_instance = _text(ds, "SOPInstanceUID")
    if not sop_instance:
        raise MalformedKos("the KOS has no SOPInstanceUID")
    titles = _sequence(ds, "ConceptNameCodeSequence")
    title_code = _text(titles[0], "CodeValue") if titles else ""
    title_meaning = _text(titles[0], "CodeMeaning") if titles else ""
    requests = _sequence(ds, "ReferencedRequestSequence")
    request = requests[0] if requests else Dataset()
    evidence = _sequence(ds, "CurrentRequestedProcedureEvidenceSequence")
    study_uid = _text(ds, "StudyInstanceUID") or _text(request, "StudyInstanceUID")
    if not study_uid and evidence:
        study_uid = _text(evidence[0], "StudyInstanceUID")
    if not study_uid:
        raise MalformedKos(f"KOS {sop_instance} names no study")
    manifest = title_code == MANIFEST_TITLE
    series: list[SeriesRef] = []
    for study in evidence:
        evidence_study = _text(study, "StudyInstanceUID")
        if evidence_study and evidence_study != study_uid:
            log.warning("KOS references another study: left out", kos=sop_instance, study=study_uid,
                        other=evidence_study)
            continue
        for index, item in enumerate(_sequence(study, "ReferencedSeriesSequence"), start=1):
            series.append(_series(item, index, require_url=manifest))
    if not series:
        raise MalformedKos(f"KOS {sop_instance} references no series of study {study_uid}")
    accession = _text(request, "AccessionNumber") or _text(ds, "AccessionNumber") or None
    return KosContent(
        sop_instance_uid=sop_instance,
        title_code=title_code,
        title_meaning=title_meaning,
        study_uid=study_uid,
        accession_number=accession,
        performed=_performed(ds, zone),
        study_description=_text(ds, "StudyDescription"),
        institution=_text(ds, "InstitutionName").split("^")[0],
        series=tuple(series),
    )
