"""Images for a given exam: a generated study re-keyed to a chosen Study UID and accession number.

A report names its exam by Study Instance UID and accession number; end-to-end tests need images in
the PACS under exactly those keys (the ANS report of exam C and the images of that exam). The
generators derive their keys from the patient and seed, so this module writes a study with them and
re-keys it: new Study/Series/SOP Instance UIDs derived from the chosen Study UID (the same inputs
give the same files), the chosen accession number and its issuer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pydicom
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from drimbox.testdata._dataset import GeneratedStudy
from drimbox.testdata.identity import Patient
from drimbox.testdata.mammography import write_mammography_study
from drimbox.testdata.tomographic import write_ct_study

__all__ = ["write_exam_study"]


def _derived(study_uid: str, kind: str, old: str) -> str:
    return str(generate_uid(entropy_srcs=["drimbox.testdata.exam", study_uid, kind, old]))


def write_exam_study(
    dest: Path,
    *,
    study_uid: str,
    accession: str,
    patient: Patient,
    accession_issuer: str | None = None,
    modality: Literal["MG", "CT"] = "MG",
    study_date: str = "20250114",
) -> GeneratedStudy:
    """Write a small study whose keys are ``study_uid`` and ``accession``, for ``patient``.

    Parameters
    ----------
    dest
        Directory for the files (created if needed).
    study_uid, accession
        The exam keys, as the report's CDA carries them.
    patient
        The patient (PatientID = the IPP; the INS, if any, in OtherPatientIDsSequence).
    accession_issuer
        OID of the accession number's issuer (IssuerOfAccessionNumberSequence, type ISO); the
        generator's local namespace when ``None``.
    modality
        ``MG``: one series of 4 views (416 x 320); ``CT``: two series of 3 slices (64 x 64).
    study_date
        StudyDate ``YYYYMMDD``.

    Returns
    -------
    GeneratedStudy
        The files and their (new) UIDs.
    """
    if modality == "MG":
        study = write_mammography_study(dest, patient, size="small", study_date=study_date)
    else:
        study = write_ct_study(dest, patient, series=2, slices_per_series=3, rows=64, cols=64, study_date=study_date)
    instances = []
    for instance in study.instances:
        ds: Dataset = pydicom.dcmread(instance.path)
        series_uid = _derived(study_uid, "series", instance.series_instance_uid)
        sop_uid = _derived(study_uid, "instance", instance.sop_instance_uid)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
        ds.AccessionNumber = accession
        if "FrameOfReferenceUID" in ds:
            ds.FrameOfReferenceUID = _derived(study_uid, "for", ds.FrameOfReferenceUID)
        if accession_issuer is not None:
            issuer = Dataset()
            issuer.UniversalEntityID = accession_issuer
            issuer.UniversalEntityIDType = "ISO"
            ds.IssuerOfAccessionNumberSequence = Sequence([issuer])
        ds.save_as(instance.path, enforce_file_format=True)
        instances.append(dataclasses.replace(instance, series_instance_uid=series_uid, sop_instance_uid=sop_uid))
    return dataclasses.replace(
        study, study_instance_uid=study_uid, accession_number=accession, instances=tuple(instances)
    )
