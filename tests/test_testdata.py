"""Synthetic DICOM generator: identities, attributes, pixels, markers, validity, big files."""

from __future__ import annotations

import filecmp
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom import Dataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from drimbox.testdata import (
    CT_IMAGE_STORAGE,
    INS_ISSUER,
    INS_NIR_TEST_OID,
    MAMMOGRAPHY_VIEWS,
    MG_FOR_PRESENTATION,
    MR_IMAGE_STORAGE,
    MULTIFRAME_WORD_SC,
    GeneratedStudy,
    Patient,
    ins_key,
    is_valid_ins,
    make_ins,
    make_patient,
    marker_specs,
    write_ct_study,
    write_large_instance,
    write_mammography_study,
    write_mr_study,
)
from drimbox.testdata.mammography import MARKER_VALUE, TISSUE_MAX

# --------------------------------------------------------------------------------------------
# Identities


@pytest.mark.parametrize(
    ("nir13", "key"),
    [
        ("2550814168025", 38),  # the example INSEE / Wikipedia give for the NIR
        ("1850578006084", 91),
    ],
)
def test_ins_key_known_values(nir13: str, key: int) -> None:
    assert ins_key(nir13) == key


def _corsican_key_other_rule(nir13: str) -> int:
    # The other way the rule is published: read 2A/2B as 20, then subtract 1,000,000 (2A) or
    # 2,000,000 (2B) -- i.e. one or two units of the department digits.
    number = int(nir13[:5] + "20" + nir13[7:]) - (1_000_000 if nir13[5:7] == "2A" else 2_000_000)
    return 97 - number % 97


@pytest.mark.parametrize(
    ("nir13", "key"),
    [
        ("169052A004090", 97),  # 1690519004090 is a multiple of 97: the key is 97, never 0
        ("278122B123456", 77),  # 2781218123456 mod 97 = 20
        ("101012B001001", 79),  # 1010118001001 mod 97 = 18
    ],
)
def test_ins_key_corsica(nir13: str, key: int) -> None:
    assert ins_key(nir13) == key == _corsican_key_other_rule(nir13)
    # 2A and 2B must not give the same key for the same remaining digits.
    assert ins_key(nir13[:5] + "2A" + nir13[7:]) != ins_key(nir13[:5] + "2B" + nir13[7:])
    assert is_valid_ins(f"{nir13}{key:02d}")


def test_ins_key_rejects_malformed() -> None:
    with pytest.raises(ValueError):
        ins_key("12345")
    with pytest.raises(ValueError):
        ins_key("169052C004090")


def test_make_ins_is_plausible_and_deterministic() -> None:
    inses = [make_ins(seed) for seed in range(300)]
    assert inses == [make_ins(seed) for seed in range(300)]
    assert len(set(inses)) == 300
    for ins in inses:
        assert len(ins) == 15 and is_valid_ins(ins)
        assert ins[0] in "12" and 1 <= int(ins[3:5]) <= 12
        assert ins[5:7] in ("2A", "2B") or 1 <= int(ins[5:7]) <= 95
        assert int(ins[13:]) == ins_key(ins[:13])
    departments = {ins[5:7] for ins in inses}
    assert {"2A", "2B"} <= departments  # Corsican NIRs do come up


def test_make_ins_follows_sex_and_birth_date() -> None:
    assert make_ins(7, sex="F", birth_date="19720315")[:5] == "27203"
    assert make_ins(7, sex="M", birth_date="19720315")[:5] == "17203"


def test_make_patient() -> None:
    patient = make_patient(11)
    assert patient == make_patient(11)
    assert patient != make_patient(12)
    assert patient.sex == "F" and patient.ins is not None and patient.ins_oid == INS_NIR_TEST_OID
    assert patient.ins[0] == "2" and patient.ins[1:5] == patient.birth_date[2:6]
    assert re.fullmatch(r"IPP\d{8}", patient.ipp)
    assert make_patient(11, with_ins=False).ins is None
    assert make_patient(11, sex="M").ins[0] == "1"  # type: ignore[index]
    with pytest.raises(ValueError):
        Patient("X", "A", "B", "19700101", "F", ins="269999999999900")


# --------------------------------------------------------------------------------------------
# Studies (small sizes: the whole module runs in a few seconds)


@pytest.fixture(scope="module")
def patient() -> Patient:
    return Patient(
        ipp="IPP00000042",
        family="DUPONT",
        given="Hélène",
        birth_date="19680423",
        sex="F",
        ins=make_ins(42, sex="F", birth_date="19680423"),
    )


@pytest.fixture(scope="module")
def mg(tmp_path_factory: pytest.TempPathFactory, patient: Patient) -> GeneratedStudy:
    return write_mammography_study(tmp_path_factory.mktemp("mg"), patient, seed=5)


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory, patient: Patient) -> GeneratedStudy:
    return write_ct_study(tmp_path_factory.mktemp("ct"), patient, series=2, slices_per_series=5, rows=96, cols=128)


@pytest.fixture(scope="module")
def mr(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    return write_mr_study(tmp_path_factory.mktemp("mr"), make_patient(3, with_ins=False), slices=6, rows=64, cols=64)


def _read(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def _check_common(ds: Dataset, study: GeneratedStudy) -> None:
    patient = study.patient
    assert ds.preamble is not None and ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == f"{patient.family}^{patient.given}"
    assert ds.PatientID == patient.ipp and ds.IssuerOfPatientID == patient.ipp_issuer
    assert ds.PatientBirthDate == patient.birth_date and ds.PatientSex == patient.sex
    assert ds.StudyInstanceUID == study.study_instance_uid
    assert ds.AccessionNumber == study.accession_number and len(ds.AccessionNumber) <= 16
    assert ds.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID
    for keyword in (
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "InstitutionName",
        "Manufacturer",
        "SeriesInstanceUID",
        "SeriesNumber",
        "InstanceNumber",
        "Modality",
    ):
        assert keyword in ds and str(ds[keyword].value), keyword
    assert ds.Modality == study.modality
    if patient.ins is None:
        assert "OtherPatientIDsSequence" not in ds
    else:
        (other,) = ds.OtherPatientIDsSequence
        assert other.PatientID == patient.ins and other.IssuerOfPatientID == INS_ISSUER
        assert other.TypeOfPatientID == "TEXT"
        (qualifier,) = other.IssuerOfPatientIDQualifiersSequence
        assert qualifier.UniversalEntityID == patient.ins_oid and qualifier.UniversalEntityIDType == "ISO"


@pytest.mark.parametrize("name", ["mg", "ct", "mr"])
def test_common_attributes(name: str, request: pytest.FixtureRequest) -> None:
    study: GeneratedStudy = request.getfixturevalue(name)
    datasets = [_read(path) for path in study.files]
    for ds in datasets:
        _check_common(ds, study)
    assert [ds.SOPInstanceUID for ds in datasets] == list(study.sop_instance_uids())
    assert len(set(study.sop_instance_uids())) == len(study.files)
    assert list(dict.fromkeys(ds.SeriesInstanceUID for ds in datasets)) == list(study.series_uids())
    for path in study.files:
        assert path.read_bytes()[128:132] == b"DICM"


def test_accented_names_survive_utf8(mg: GeneratedStudy) -> None:
    raw = mg.files[0].read_bytes()
    assert "Hélène".encode() in raw  # UTF-8 on disk, not Latin-1
    assert str(_read(mg.files[0]).PatientName) == "DUPONT^Hélène"


def test_mammography_attributes(mg: GeneratedStudy) -> None:
    assert len(mg.files) == 4 and len(mg.series_uids()) == 1
    expected = {
        "RCC": ("R", "CC", "399162004", ["P", "L"]),
        "LCC": ("L", "CC", "399162004", ["A", "R"]),
        "RMLO": ("R", "MLO", "399368009", ["P", "FL"]),
        "LMLO": ("L", "MLO", "399368009", ["A", "FR"]),
    }
    for number, (view, path) in enumerate(zip(MAMMOGRAPHY_VIEWS, mg.files, strict=True), start=1):
        ds = _read(path)
        laterality, position, code, orientation = expected[view]
        assert ds.SOPClassUID == MG_FOR_PRESENTATION and ds.Modality == "MG"
        assert ds.InstanceNumber == number and ds.SeriesNumber == 1
        assert ds.ImageLaterality == laterality and ds.ViewPosition == position
        assert ds.ViewCodeSequence[0].CodeValue == code and ds.ViewCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert list(ds.PatientOrientation) == orientation
        assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert ds.BodyPartExamined == "BREAST" and ds.BreastImplantPresent == "NO"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.VOILUTFunction in ("LINEAR", "SIGMOID") and ds.WindowWidth > 0
        assert ds.WindowCenter + ds.WindowWidth / 2 > TISSUE_MAX  # tissue below white, markers above
        assert (ds.Rows, ds.Columns) == (416, 320)
        pixels = ds.pixel_array
        assert pixels.shape == (416, 320) and pixels.dtype == np.uint16


def _tissue_fraction(column: npt.NDArray[np.uint16]) -> float:
    return float(np.mean(column > 300))


def test_mammography_breast_on_chest_wall_side(mg: GeneratedStudy) -> None:
    for view, path in zip(MAMMOGRAPHY_VIEWS, mg.files, strict=True):
        pixels = _read(path).pixel_array
        chest, nipple_side = (pixels[:, 0], pixels[:, -1]) if view[0] == "L" else (pixels[:, -1], pixels[:, 0])
        assert _tissue_fraction(chest) > 0.6, view
        assert _tissue_fraction(nipple_side) == 0, view


def _transforms(template: npt.NDArray[np.bool_]) -> list[npt.NDArray[np.bool_]]:
    """The 8 images of a glyph under flips and quarter turns."""
    out = []
    for k in range(4):
        rotated = np.rot90(template, k)
        out += [rotated, np.fliplr(rotated)]
    return out


def test_marker_templates_are_asymmetric_and_distinct() -> None:
    specs = marker_specs("small")
    assert set(specs) == set(MAMMOGRAPHY_VIEWS)
    for view, spec in specs.items():
        images = _transforms(spec.template)
        assert sum(np.array_equal(spec.template, image) for image in images) == 1, view  # no symmetry
        for other in MAMMOGRAPHY_VIEWS:
            if other != view:
                assert not any(np.array_equal(specs[other].template, image) for image in images)
    full = marker_specs("full")
    assert full["RCC"].cell > specs["RCC"].cell and full["RCC"].row > specs["RCC"].row


def test_markers_are_burnt_where_specs_say(mg: GeneratedStudy) -> None:
    specs = marker_specs("small")
    for view, path in zip(MAMMOGRAPHY_VIEWS, mg.files, strict=True):
        spec = specs[view]
        pixels = _read(path).pixel_array
        box = pixels[spec.row : spec.row + spec.height, spec.col : spec.col + spec.width]
        assert np.array_equal(box == MARKER_VALUE, spec.mask()), view
        assert (box[~spec.mask()] == 0).all()
        c = spec.cell
        frame = pixels[spec.row - c : spec.row + spec.height + c, spec.col - c : spec.col + spec.width + c]
        assert (frame[~np.pad(spec.mask(), c)] == 0).all()  # black margin all round
        # The marker is the only saturated thing in the image, and it sits inside the breast.
        assert (pixels == MARKER_VALUE).sum() == spec.mask().sum()
        ring = pixels[
            spec.row - 2 * c : spec.row + spec.height + 2 * c, spec.col - 2 * c : spec.col + spec.width + 2 * c
        ]
        outer = np.ones(ring.shape, dtype=bool)
        outer[c:-c, c:-c] = False
        assert (ring[outer] > 300).all(), view


def test_mammography_determinism(tmp_path: Path, mg: GeneratedStudy, patient: Patient) -> None:
    again = write_mammography_study(tmp_path / "again", patient, seed=5)
    assert again.study_instance_uid == mg.study_instance_uid and again.accession_number == mg.accession_number
    for a, b in zip(mg.files, again.files, strict=True):
        assert filecmp.cmp(a, b, shallow=False)
    other = write_mammography_study(tmp_path / "other", patient, seed=6)
    assert other.study_instance_uid != mg.study_instance_uid
    assert not set(other.sop_instance_uids()) & set(mg.sop_instance_uids())
    prior = write_mammography_study(tmp_path / "prior", patient, seed=5, study_date="20230102")
    assert prior.study_instance_uid != mg.study_instance_uid and _read(prior.files[0]).StudyDate == "20230102"


def test_patient_without_ins(tmp_path: Path) -> None:
    no_ins = make_patient(8, with_ins=False)
    study = write_mammography_study(tmp_path, no_ins)
    ds = _read(study.files[0])
    assert ds.PatientID == no_ins.ipp and "OtherPatientIDsSequence" not in ds


def test_lossless_compression_round_trips(tmp_path: Path, mg: GeneratedStudy, patient: Patient) -> None:
    rle = write_mammography_study(tmp_path / "rle", patient, seed=5, transfer_syntax=RLELossless)
    ds = _read(rle.files[2])
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(ds.pixel_array, _read(mg.files[2]).pixel_array)
    with pytest.raises(ValueError, match="losslessly"):
        write_mammography_study(tmp_path / "lossy", patient, transfer_syntax=JPEGBaseline8Bit)


def test_ct_geometry_and_pixels(ct: GeneratedStudy) -> None:
    datasets = [_read(path) for path in ct.files]
    assert len(ct.series_uids()) == 2 and len(datasets) == 10
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    for series_uid in ct.series_uids():
        series = [ds for ds in datasets if ds.SeriesInstanceUID == series_uid]
        assert [ds.InstanceNumber for ds in series] == [1, 2, 3, 4, 5]
        z = [float(ds.ImagePositionPatient[2]) for ds in series]
        steps = np.diff(z)
        assert np.allclose(steps, -float(series[0].SliceThickness))
        assert z == [float(ds.SliceLocation) for ds in series]
    for ds in datasets:
        assert ds.SOPClassUID == CT_IMAGE_STORAGE
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        spacing = [float(v) for v in ds.PixelSpacing]
        assert spacing[0] == spacing[1] == pytest.approx(350 / 128, abs=1e-5)
        # The volume is centred on the table axis: first pixel centre at -(n-1)/2 spacings.
        assert float(ds.ImagePositionPatient[0]) == pytest.approx(-spacing[1] * 127 / 2, abs=1e-3)
        assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 16, 1)
        assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == -1024 and ds.RescaleType == "HU"
        pixels = ds.pixel_array
        assert pixels.shape == (96, 128) and pixels.dtype == np.int16
        hu = pixels.astype(np.int32) - 1024
        assert hu.min() < -1000 and hu.max() > 500  # air and bone both present


def test_mr_series(mr: GeneratedStudy) -> None:
    datasets = [_read(path) for path in mr.files]
    assert len(mr.series_uids()) == 1 and len(datasets) == 6
    for ds in datasets:
        assert ds.SOPClassUID == MR_IMAGE_STORAGE and ds.PixelRepresentation == 0
        assert ds.pixel_array.shape == (64, 64) and ds.pixel_array.dtype == np.uint16
        assert ds.ScanningSequence == "SE" and ds.MRAcquisitionType == "2D"
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert np.allclose(np.diff(z), -float(datasets[0].SpacingBetweenSlices))


# --------------------------------------------------------------------------------------------
# External validators


def _dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=30, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if "Error" in line]


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory, patient: Patient) -> Path:
    return write_large_instance(tmp_path_factory.mktemp("large"), patient, target_bytes=20_000_000)


@pytest.mark.parametrize(("name", "index"), [("mg", 0), ("mg", 3), ("ct", 0), ("ct", 7), ("mr", 2)])
def test_dciodvfy_accepts(name: str, index: int, request: pytest.FixtureRequest) -> None:
    study: GeneratedStudy = request.getfixturevalue(name)
    assert _dciodvfy_errors(study.files[index]) == []


def test_dciodvfy_check_is_not_vacuous(tmp_path: Path, mg: GeneratedStudy) -> None:
    broken = _read(mg.files[0])
    del broken.ImageLaterality, broken.PresentationIntentType
    broken.save_as(tmp_path / "broken.dcm")
    assert len(_dciodvfy_errors(tmp_path / "broken.dcm")) >= 2


def test_dciodvfy_accepts_large_instance(large: Path) -> None:
    assert _dciodvfy_errors(large) == []


def test_dcmdump_reads_everything(mg: GeneratedStudy, ct: GeneratedStudy, mr: GeneratedStudy) -> None:
    files = [mg.files[0], ct.files[0], mr.files[0]]
    result = subprocess.run(["dcmdump", "-q", *map(str, files)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "E:" not in result.stderr


# --------------------------------------------------------------------------------------------
# Large instance


def test_large_instance(large: Path) -> None:
    assert large.stat().st_size >= 20_000_000
    header = pydicom.dcmread(large, stop_before_pixels=True)
    assert header.SOPClassUID == MULTIFRAME_WORD_SC and "PixelData" not in header
    frames, rows, cols = int(header.NumberOfFrames), header.Rows, header.Columns
    length = frames * rows * cols * 2
    # Pixel Data is the last element, with an explicit length, and ends the file exactly.
    with large.open("rb") as f:
        f.seek(large.stat().st_size - length - 12)
        assert struct.unpack("<HH2sHI", f.read(12)) == (0x7FE0, 0x0010, b"OW", 0, length)
    # Frames differ by a known shift: frame k = frame 0 + 16 k (mod 2^12), read one at a time.
    first = pixel_array(large, index=0).astype(np.int32)
    last = pixel_array(large, index=frames - 1).astype(np.int32)
    assert first.shape == (rows, cols)
    assert ((last - first) % 4096 == (16 * (frames - 1)) % 2048).all()


def test_large_instance_refuses_what_one_element_cannot_hold(tmp_path: Path, patient: Patient) -> None:
    with pytest.raises(ValueError):
        write_large_instance(tmp_path, patient, target_bytes=5 * 2**30)
