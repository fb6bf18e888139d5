"""Reports and PACS walks for the manifest tests, plus dciodvfy."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from hl7_samples import DRIM_M_DATA, sample_message  # on sys.path through conftest.py
from pydicom import Dataset

from drimbox.hl7 import parse_report
from drimbox.pacs.models import InstanceInfo, SeriesInfo, StudyInfo
from drimbox.reports import ImagingReport

MG = "1.2.840.10008.5.1.4.1.1.1.2"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
ECG = "1.2.840.10008.5.1.4.1.1.9.1.1"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SR = "1.2.840.10008.5.1.4.1.1.88.22"
ROOT = "https://db.site-a.test/dicom-web"
KOS_DUMP = DRIM_M_DATA / "informatif" / "KIN" / "Manifest_KOS.xml"


def ans_report(name: str = "C-ORU") -> ImagingReport:
    """The report of an ANS sample (with its generated CDA)."""
    return parse_report(sample_message(name))


def _series(uid: str, number: int, modality: str, instances: list[InstanceInfo]) -> SeriesInfo:
    identifier = Dataset()
    identifier.SeriesInstanceUID = uid
    identifier.SeriesNumber = number
    identifier.Modality = modality
    return SeriesInfo(uid, modality, identifier, tuple(instances))


def walk(study_uid: str, *, rows: bool = True) -> StudyInfo:
    """A study as a PACS walk reports it: 4 MG views, and a series of non-image objects."""
    identifier = Dataset()
    identifier.StudyInstanceUID = study_uid
    identifier.StudyDate, identifier.StudyTime, identifier.StudyID = "20250114", "091500", "4711"
    identifier.StudyDescription = "Mammographie de dépistage"
    size = (416, 320) if rows else (None, None)
    views = [InstanceInfo(MG, f"{study_uid}.1.{n}", n, *size) for n in range(1, 5)]
    others = [
        InstanceInfo(GSPS, f"{study_uid}.2.1", 1),
        InstanceInfo(ECG, f"{study_uid}.2.2", 2),
        InstanceInfo(PDF, f"{study_uid}.2.3", 3),
        InstanceInfo(SR, f"{study_uid}.2.4", 4),
    ]
    return StudyInfo(
        study_uid, identifier, (_series(f"{study_uid}.1", 1, "MG", views), _series(f"{study_uid}.2", 2, "OT", others))
    )


@dataclass(frozen=True)
class Verification:
    """dciodvfy's verdict on one file."""

    returncode: int
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    output: str


def dciodvfy(path: Path) -> Verification:
    """Run dicom3tools' dciodvfy (IOD/module/attribute conformance, PS3.3)."""
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    return Verification(
        returncode=done.returncode,
        errors=tuple(line for line in lines if line.startswith("Error")),
        warnings=tuple(line for line in lines if line.startswith("Warning")),
        output=done.stdout + done.stderr,
    )
