"""Identity reconciliation before import (F8, IHE IRWF.b): rules, OriginalAttributesSequence, refusals,
and pixel data that stays byte for byte what the source sent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import RLELossless

from drimbox.errors import ImportFailed
from drimbox.retrieve.identity import INS_ISSUER, plan_identity, read_identities, reconcile_file
from drimbox.retrieve.model import PatientTraits
from drimbox.testdata import GeneratedStudy, Patient, make_patient, write_ct_study, write_mammography_study


def traits_of(patient: Patient, *, local_id: str | None = "IPP-B-42", local_issuer: str | None = None,
              ins: str | None = None) -> PatientTraits:
    assert patient.ins is not None
    return PatientTraits(ins=ins or patient.ins, ins_oid=patient.ins_oid, birth_name=patient.family,
                         first_given_name=patient.given,
                         birth_date=date(int(patient.birth_date[:4]), int(patient.birth_date[4:6]),
                                         int(patient.birth_date[6:])),
                         sex="F", local_id=local_id, local_issuer=local_issuer)


@pytest.fixture(scope="module")
def mammo(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    return write_mammography_study(tmp_path_factory.mktemp("mg"), make_patient(11), size="small")


def _pixel_bytes(path: Path) -> bytes:
    return bytes(dcmread(path).PixelData)


def _tail(path: Path, length: int) -> bytes:
    return path.read_bytes()[-length:]


def test_local_rule_sets_ipp_keeps_ins_and_records_originals(mammo: GeneratedStudy, tmp_path: Path) -> None:
    patient = mammo.patient
    traits = traits_of(patient, local_id="IPP-B-42", local_issuer="CH-B")
    files = [i.path for i in mammo.instances]
    plan = plan_identity(read_identities(files), traits, rule="local", local_issuer="IGNORED")
    moment = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    for source in files:
        target = tmp_path / source.name
        changed = reconcile_file(source, target, plan, modifying_system="DRIMBOX site-b",
                                 source_of_previous_values="site-a", now=moment)
        assert {"PatientID", "IssuerOfPatientID"} <= set(changed)
        ds = dcmread(target)
        original = dcmread(source)
        assert ds.PatientID == "IPP-B-42" and ds.IssuerOfPatientID == "CH-B"
        assert "IssuerOfPatientIDQualifiersSequence" not in ds
        (other,) = ds.OtherPatientIDsSequence
        assert other.PatientID == patient.ins and other.IssuerOfPatientID == INS_ISSUER
        assert other.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == patient.ins_oid
        assert other.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityIDType == "ISO"
        assert str(ds.PatientName) == f"{patient.family}^{patient.given}"
        (item,) = ds.OriginalAttributesSequence
        assert item.ReasonForTheAttributeModification == "COERCE"
        assert item.ModifyingSystem == "DRIMBOX site-b" and item.SourceOfPreviousValues == "site-a"
        assert item.AttributeModificationDateTime.startswith("20250304050607")
        (previous,) = item.ModifiedAttributesSequence
        assert previous.PatientID == patient.ipp and previous.IssuerOfPatientID == patient.ipp_issuer
        # Only what changed is recorded: the name, birth date and sex were already the INS traits.
        assert "PatientBirthDate" not in previous and "PatientSex" not in previous
        assert ds.SOPInstanceUID == original.SOPInstanceUID and ds.StudyInstanceUID == original.StudyInstanceUID
        assert bytes(ds.PixelData) == bytes(original.PixelData)
        pixel_length = len(original.PixelData)
        assert _tail(target, pixel_length) == _tail(source, pixel_length)


def test_ins_rule_puts_the_ins_triple_in_patient_id(mammo: GeneratedStudy, tmp_path: Path) -> None:
    patient = mammo.patient
    files = [i.path for i in mammo.instances][:1]
    plan = plan_identity(read_identities(files), traits_of(patient), rule="ins")
    target = tmp_path / "out.dcm"
    reconcile_file(files[0], target, plan, modifying_system="DRIMBOX")
    ds = dcmread(target)
    assert ds.PatientID == patient.ins and ds.IssuerOfPatientID == INS_ISSUER
    assert ds.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == patient.ins_oid
    assert ds.OtherPatientIDsSequence[0].PatientID == patient.ins
    previous = ds.OriginalAttributesSequence[0].ModifiedAttributesSequence[0]
    assert previous.PatientID == patient.ipp
    # The source had no qualifier on its IPP: recorded as added (empty previous value).
    assert "IssuerOfPatientIDQualifiersSequence" in previous and len(previous.IssuerOfPatientIDQualifiersSequence) == 0


def test_traits_override_name_birth_date_sex_and_history_accumulates(mammo: GeneratedStudy, tmp_path: Path) -> None:
    patient = mammo.patient
    traits = PatientTraits(ins=patient.ins or "", ins_oid=patient.ins_oid, birth_name="MARTIN-DURAND",
                           first_given_name="ANNE", birth_date=date(1960, 1, 2), sex="M", local_id="X1")
    source = mammo.instances[0].path
    # Instances carry an INS: a different birth date in the traits does not block (the INS decides).
    plan = plan_identity(read_identities([source]), traits, rule="local", local_issuer="CH-B")
    once, twice = tmp_path / "once.dcm", tmp_path / "twice.dcm"
    changed = reconcile_file(source, once, plan, modifying_system="DRIMBOX")
    assert {"PatientName", "PatientBirthDate", "PatientSex"} <= set(changed)
    ds = dcmread(once)
    assert (str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) == ("MARTIN-DURAND^ANNE", "19600102", "M")
    assert ds.IssuerOfPatientID == "CH-B"  # the call gave no issuer: the setting
    previous = ds.OriginalAttributesSequence[0].ModifiedAttributesSequence[0]
    assert previous.PatientBirthDate == patient.birth_date and previous.PatientSex == patient.sex
    # Reconciling again changes nothing, adds no history item.
    assert reconcile_file(once, twice, plan, modifying_system="DRIMBOX") == []
    assert len(dcmread(twice).OriginalAttributesSequence) == 1


def test_compressed_pixel_data_is_copied_byte_for_byte(tmp_path: Path) -> None:
    study = write_ct_study(tmp_path / "ct", make_patient(12), series=1, slices_per_series=2, rows=64, cols=64,
                           transfer_syntax=RLELossless)
    source = study.instances[0].path
    plan = plan_identity(read_identities([source]), traits_of(study.patient), rule="ins")
    target = tmp_path / "out.dcm"
    reconcile_file(source, target, plan, modifying_system="DRIMBOX")
    before, after = dcmread(source), dcmread(target)
    assert after.file_meta.TransferSyntaxUID == RLELossless
    assert after.PixelData == before.PixelData
    assert _tail(target, len(before.PixelData)) == _tail(source, len(before.PixelData))
    assert (after.pixel_array == before.pixel_array).all()


def test_instances_of_two_patients_are_refused(mammo: GeneratedStudy, tmp_path: Path) -> None:
    other = write_ct_study(tmp_path / "ct", make_patient(13), series=1, slices_per_series=1, rows=16, cols=16)
    files = [mammo.instances[0].path, other.instances[0].path]
    with pytest.raises(ImportFailed, match="2 different patients"):
        plan_identity(read_identities(files), traits_of(mammo.patient), rule="local")
    with pytest.raises(ImportFailed, match="2 different patients"):
        plan_identity(read_identities(files), None, rule="ins")


def test_instances_of_another_ins_than_the_patient_are_refused(mammo: GeneratedStudy) -> None:
    other = make_patient(14)
    assert other.ins is not None
    files = [i.path for i in mammo.instances]
    with pytest.raises(ImportFailed, match="INS is not the patient's") as refused:
        plan_identity(read_identities(files), traits_of(mammo.patient, ins=other.ins), rule="local")
    assert other.ins in str(refused.value) and (mammo.patient.ins or "") in str(refused.value)


def test_without_ins_the_birth_date_must_agree(tmp_path: Path) -> None:
    no_ins = make_patient(15, with_ins=False)
    study = write_ct_study(tmp_path / "ct", no_ins, series=1, slices_per_series=1, rows=16, cols=16)
    files = [study.instances[0].path]
    ins_patient = make_patient(16)
    mismatching = traits_of(ins_patient)
    if mismatching.birth_date.strftime("%Y%m%d") != no_ins.birth_date:
        with pytest.raises(ImportFailed, match="birth date"):
            plan_identity(read_identities(files), mismatching, rule="local")
    matching = PatientTraits(ins=ins_patient.ins or "", ins_oid=ins_patient.ins_oid, birth_name=no_ins.family,
                             first_given_name=no_ins.given,
                             birth_date=datetime.strptime(no_ins.birth_date, "%Y%m%d").date(), sex="F", local_id="L1")
    plan = plan_identity(read_identities(files), matching, rule="local")
    assert plan.ins == ins_patient.ins
    with pytest.raises(ImportFailed, match="no INS"):
        plan_identity(read_identities(files), None, rule="ins")


def test_local_rule_without_local_id_is_refused(mammo: GeneratedStudy) -> None:
    files = [mammo.instances[0].path]
    with pytest.raises(ImportFailed, match="local identifier"):
        plan_identity(read_identities(files), traits_of(mammo.patient, local_id=None), rule="local")
    with pytest.raises(ImportFailed, match="local identifier"):
        plan_identity(read_identities(files), None, rule="local")


def test_ins_rule_without_traits_uses_the_instances_ins(mammo: GeneratedStudy) -> None:
    plan = plan_identity(read_identities([i.path for i in mammo.instances]), None, rule="ins")
    assert plan.patient_id == mammo.patient.ins and plan.name is None


def test_non_ascii_traits_switch_the_character_set(tmp_path: Path) -> None:
    study = write_ct_study(tmp_path / "ct", make_patient(17), series=1, slices_per_series=1, rows=16, cols=16)
    source = study.instances[0].path
    ds = dcmread(source)
    ds.SpecificCharacterSet = "ISO_IR 6"
    ds.PatientName = "DUPONT^MARIE"
    ds.StudyDescription = "THORAX"
    latin = tmp_path / "ascii.dcm"
    ds.save_as(latin, enforce_file_format=True)
    traits = PatientTraits(ins=study.patient.ins or "", ins_oid=study.patient.ins_oid, birth_name="LEBŒUF",
                           first_given_name="HÉLÈNE", birth_date=date(1970, 1, 1), sex="F", local_id="L2")
    plan = plan_identity(read_identities([latin]), traits, rule="local")
    target = tmp_path / "out.dcm"
    changed = reconcile_file(latin, target, plan, modifying_system="DRIMBOX")
    assert "SpecificCharacterSet" in changed
    out = dcmread(target)
    assert out.SpecificCharacterSet == "ISO_IR 192" and str(out.PatientName) == "LEBŒUF^HÉLÈNE"
    assert out.StudyDescription == "THORAX"
    assert out.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].SpecificCharacterSet == "ISO_IR 6"


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(ImportFailed, match="junk.dcm"):
        read_identities([junk])
