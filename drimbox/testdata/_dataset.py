"""Parts shared by every generator: UIDs, the study context, common modules, writing.

UIDs are SHA-512 derived (``generate_uid`` with ``entropy_srcs``) from the patient, the study date,
the modality and the seed, so reruns give the same UIDs and fixtures can be compared across runs,
while two studies that differ in any of those get different UIDs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from drimbox.testdata.identity import INS_ISSUER, Patient

__all__ = [
    "DateLike",
    "GeneratedInstance",
    "GeneratedStudy",
    "StudyContext",
    "base_dataset",
    "code_item",
    "instance_path",
    "new_study_context",
    "powerlaw_noise",
    "seeds",
    "set_monochrome_pixels",
    "study_result",
    "uid",
    "upsample",
    "write_instance",
]

MANUFACTURER = "DRIMBOX-SYNTHETIC"
INSTITUTION = "Centre Hospitalier de Démonstration"
ACCESSION_ISSUER = "CH-DEMO-RIS"
REFERRING_PHYSICIAN = "MARTIN^Élodie^^Dr"
IMPLEMENTATION_VERSION = "DRIMBOX_TD_1"

DateLike = str | dt.date

# Mammography must travel losslessly (DESIGN §3); these are the encapsulated syntaxes that are.
_LOSSLESS_ENCAPSULATED = frozenset(
    {RLELossless, JPEGLSLossless, JPEGLosslessSV1, JPEG2000Lossless, HTJ2KLossless, HTJ2KLosslessRPCL}
)


@dataclass(frozen=True)
class GeneratedInstance:
    """One file written by a generator."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    series_number: int
    instance_number: int


@dataclass(frozen=True)
class GeneratedStudy:
    """What a generator wrote: the study keys and its files, in series then instance order.

    Attributes
    ----------
    study_instance_uid, accession_number
        The study keys, as a RIS report would carry them.
    patient
        The patient the study belongs to.
    files
        Every file written, in series then instance order.
    modality
        ``MG``, ``CT``, ``MR``…
    instances
        One record per file (same order as ``files``) with its UIDs and numbers.
    study_date
        StudyDate ``YYYYMMDD``.
    """

    study_instance_uid: str
    accession_number: str
    patient: Patient
    files: tuple[Path, ...]
    modality: str
    instances: tuple[GeneratedInstance, ...] = field(default=(), repr=False)
    study_date: str = ""

    def series_uids(self) -> tuple[str, ...]:
        """Series Instance UIDs, in series order, without duplicates."""
        return tuple(dict.fromkeys(i.series_instance_uid for i in self.instances))

    def sop_instance_uids(self) -> tuple[str, ...]:
        """SOP Instance UIDs, in file order."""
        return tuple(i.sop_instance_uid for i in self.instances)

    def total_bytes(self) -> int:
        """Size on disk of all files."""
        return sum(p.stat().st_size for p in self.files)


@dataclass(frozen=True)
class StudyContext:
    """Study-level values every instance of one generated study repeats."""

    patient: Patient
    modality: str
    seed: int
    study_uid: str
    accession: str
    study_id: str
    study_date: str
    study_time: str
    description: str
    frame_of_reference_uid: str


def uid(*parts: object) -> UID:
    """A deterministic UID derived from ``parts`` (pydicom root, SHA-512 of the parts)."""
    return generate_uid(entropy_srcs=["drimbox.testdata", *(str(p) for p in parts)])


def _as_dicom_date(value: DateLike) -> str:
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    dt.datetime.strptime(value, "%Y%m%d")  # raises on a malformed date
    return value


def new_study_context(
    patient: Patient, *, modality: str, seed: int, study_date: DateLike, study_time: str, description: str
) -> StudyContext:
    """Derive the study keys from the patient, modality, date and seed."""
    date = _as_dicom_date(study_date)
    study_uid = uid("study", modality, patient.ipp, patient.ipp_issuer, date, seed)
    digest = int(hashlib.sha256(study_uid.encode()).hexdigest(), 16)
    return StudyContext(
        patient=patient,
        modality=modality,
        seed=seed,
        study_uid=study_uid,
        accession=f"ACC{digest % 10**9:09d}",
        study_id=f"{digest % 10**6:06d}",
        study_date=date,
        study_time=study_time,
        description=description,
        frame_of_reference_uid=uid("for", study_uid),
    )


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """A Code Sequence item (basic coded entry)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _patient_age(birth_date: str, on: str) -> str:
    born = dt.datetime.strptime(birth_date, "%Y%m%d").date()
    day = dt.datetime.strptime(on, "%Y%m%d").date()
    years = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
    return f"{max(years, 0):03d}Y"


def _add_patient(ds: Dataset, patient: Patient, study_date: str) -> None:
    """Patient module: the PACS view, local IPP as PatientID and the INS as another identifier."""
    ds.PatientName = patient.dicom_name
    ds.PatientID = patient.ipp
    ds.IssuerOfPatientID = patient.ipp_issuer
    ds.TypeOfPatientID = "TEXT"
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = _patient_age(patient.birth_date, study_date)
    if patient.ins is not None:
        # DRIM-M: the INS travels as an "other" identifier, qualified by its namespace OID, so a
        # node can publish under the INS while the PACS keeps its own IPP as the primary key.
        qualifier = Dataset()
        qualifier.UniversalEntityID = patient.ins_oid
        qualifier.UniversalEntityIDType = "ISO"
        other = Dataset()
        other.PatientID = patient.ins
        other.IssuerOfPatientID = INS_ISSUER
        other.IssuerOfPatientIDQualifiersSequence = Sequence([qualifier])
        other.TypeOfPatientID = "TEXT"
        ds.OtherPatientIDsSequence = Sequence([other])


def base_dataset(
    ctx: StudyContext,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    series_uid: str,
    series_number: int,
    instance_number: int,
    series_description: str,
    content_time: str,
) -> Dataset:
    """Patient, General Study, Patient Study, General Series, General Equipment, General Image
    (identification part) and SOP Common modules, shared by every IOD generated here."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the names carry French accents
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = ctx.study_date
    ds.InstanceCreationTime = content_time
    ds.StudyDate = ctx.study_date
    ds.SeriesDate = ctx.study_date
    ds.ContentDate = ctx.study_date
    ds.StudyTime = ctx.study_time
    ds.SeriesTime = ctx.study_time
    ds.ContentTime = content_time
    ds.AccessionNumber = ctx.accession
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = ACCESSION_ISSUER
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer])
    ds.Modality = ctx.modality
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = REFERRING_PHYSICIAN
    ds.StationName = f"SYNTH-{ctx.modality}"
    ds.StudyDescription = ctx.description
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = f"Synthetic {ctx.modality}"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "drimbox-testdata 1"
    _add_patient(ds, ctx.patient, ctx.study_date)
    ds.StudyInstanceUID = ctx.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = ctx.study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    return ds


def set_monochrome_pixels(
    ds: Dataset, pixels: npt.NDArray[np.uint16] | npt.NDArray[np.int16], *, bits_stored: int
) -> None:
    """Image Pixel module for one 16-bit grayscale frame (signedness from the array dtype)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()


def write_instance(ds: Dataset, path: Path, transfer_syntax: str) -> None:
    """Write ``ds`` as a Part 10 file, compressing the pixel data if the syntax asks for it."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ts = UID(transfer_syntax)
    ds.file_meta.TransferSyntaxUID = ts if not ts.is_compressed else ExplicitVRLittleEndian
    if ts.is_compressed:
        if ts not in _LOSSLESS_ENCAPSULATED:
            raise ValueError(f"{ts.name}: test data is only generated losslessly")
        # pydicom's own RLE encoder needs nothing more; JPEG-LS needs pyjpegls, JPEG 2000 pylibjpeg.
        ds.compress(ts, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


def powerlaw_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> npt.NDArray[np.float32]:
    """Gaussian random field with a ``1/f**beta`` power spectrum, zero mean, unit variance.

    Mammographic parenchyma has a power-law spectrum with an exponent near 3, so this gives a
    plausible tissue texture from one FFT instead of any per-pixel loop.
    """
    rows, cols = shape
    white = rng.standard_normal(shape, dtype=np.float32)
    fy = np.fft.fftfreq(rows).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(cols).astype(np.float32)[None, :]
    radius = np.sqrt(fy * fy + fx * fx)
    radius[0, 0] = 1.0  # the DC term is removed below; avoid dividing by zero
    spectrum = np.fft.rfft2(white) * radius ** (-beta / 2)
    spectrum[0, 0] = 0
    field_ = np.fft.irfft2(spectrum, s=shape).astype(np.float32)
    field_ /= field_.std() + np.float32(1e-12)
    return field_


def upsample(image: npt.NDArray[np.float32], factor: int, shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Bilinear enlargement by an integer ``factor``, cropped to ``shape``.

    Done with broadcasting over ``(coarse, factor, …)`` blocks rather than index gathering: the
    full-size array is then touched only three times, which is what keeps full-size mammography
    fast.
    """
    if factor == 1:
        return image[: shape[0], : shape[1]]
    w = np.arange(factor, dtype=np.float32) / np.float32(factor)
    n, m = image.shape
    right = image[:, np.minimum(np.arange(m) + 1, m - 1)]
    wide = (image[:, :, None] * (1 - w) + right[:, :, None] * w).reshape(n, m * factor)[:, : shape[1]]
    below = wide[np.minimum(np.arange(n) + 1, n - 1)]
    tall = wide[:, None, :] * (1 - w)[None, :, None] + below[:, None, :] * w[None, :, None]
    out: npt.NDArray[np.float32] = tall.reshape(n * factor, -1)[: shape[0]]
    return out


def seeds(*parts: int | str) -> list[int]:
    """Seed material for ``numpy.random.default_rng`` from mixed parts (strings hashed stably)."""
    out: list[int] = []
    for part in parts:
        if isinstance(part, str):
            out.append(int.from_bytes(hashlib.sha256(part.encode()).digest()[:8], "little"))
        else:
            out.append(part & 0xFFFFFFFFFFFFFFFF)
    return out


def instance_path(dest: Path, ctx: StudyContext, series_number: int, instance_number: int) -> Path:
    """File name for one instance: modality, accession, series and instance numbers."""
    return dest / f"{ctx.modality}-{ctx.accession}-{series_number:02d}-{instance_number:04d}.dcm"


def study_result(ctx: StudyContext, instances: list[GeneratedInstance]) -> GeneratedStudy:
    """The :class:`GeneratedStudy` describing what was written for ``ctx``."""
    return GeneratedStudy(
        study_instance_uid=ctx.study_uid,
        accession_number=ctx.accession,
        patient=ctx.patient,
        files=tuple(i.path for i in instances),
        modality=ctx.modality,
        instances=tuple(instances),
        study_date=ctx.study_date,
    )
