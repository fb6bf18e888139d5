"""The result SR: built with highdicom from the exam's headers, read back to the same readings."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread

from drimbox.screening.errors import ScreeningRefused
from drimbox.screening.model import Outcome, Reading, is_discordant
from drimbox.screening.sr import COMPREHENSIVE_SR, build_result_sr, read_result_sr
from drimbox.testdata import make_patient, write_mammography_study
from tests.screening.conftest import reading


def test_result_sr_round_trip_through_a_file(tmp_path: Path, l1: Reading) -> None:
    study = write_mammography_study(tmp_path / "mg", make_patient(1), series_per_view=True)
    evidence = [dcmread(p, stop_before_pixels=True) for p in study.files]
    l2 = reading("20202020202", right=(1, "C"), outcome=Outcome.NORMAL)
    sr = build_result_sr(evidence, request_id="req-1", l1=l1, l2=l2, discordant=is_discordant(l1, l2))
    buffer = BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    back = pydicom.dcmread(BytesIO(buffer.getvalue()))
    assert back.SOPClassUID == COMPREHENSIVE_SR
    assert back.StudyInstanceUID == study.study_instance_uid
    assert back.PatientID == evidence[0].PatientID
    document = read_result_sr(back)
    assert (document.request_id, document.l1, document.l2, document.discordant) == ("req-1", l1, l2, False)


def test_discordance_and_refusals(l1: Reading) -> None:
    assert is_discordant(l1, reading("20202020202", outcome=Outcome.RECALL))
    assert is_discordant(l1, reading("20202020202", left=(3, "B"), outcome=Outcome.NORMAL))
    assert is_discordant(l1, reading("20202020202", right=(1, "D"), outcome=Outcome.NORMAL))  # B vs D
    assert not is_discordant(l1, reading("20202020202", outcome=Outcome.TECHNICAL_RECALL))
    with pytest.raises(ScreeningRefused, match="outcome"):
        build_result_sr([], request_id="r", l1=l1, l2=reading("20202020202"), discordant=False)


def test_a_document_that_is_not_the_result_is_refused(tmp_path: Path, l1: Reading) -> None:
    study = write_mammography_study(tmp_path / "mg", make_patient(1), series_per_view=True)
    image = dcmread(study.files[0])
    with pytest.raises(ScreeningRefused, match="not a Comprehensive SR"):
        read_result_sr(image)
    evidence = [dcmread(p, stop_before_pixels=True) for p in study.files]
    sr = build_result_sr(evidence, request_id="r", l1=l1, l2=reading("20202020202", outcome=Outcome.NORMAL),
                         discordant=False)
    del sr.ContentSequence[-1]  # the L2 reading removed
    with pytest.raises(ScreeningRefused, match="both readings"):
        read_result_sr(sr)
