"""The screening-exam and eligibility checks, on generated mammography and CT headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from drimbox.screening.errors import NotEligible, NotScreeningExam
from drimbox.screening.model import Reading
from drimbox.screening.validation import ImageFacts, check_eligible, check_screening_exam, image_facts
from drimbox.testdata import make_patient, write_ct_study, write_mammography_study
from tests.screening.conftest import reading


def _facts(paths: list[Path]) -> list[ImageFacts]:
    return [image_facts(dcmread(p, stop_before_pixels=True)) for p in paths]


def test_four_view_screening_mammography_qualifies(tmp_path: Path) -> None:
    study = write_mammography_study(tmp_path, make_patient(1), series_per_view=True)
    facts = _facts(study.files)
    assert sorted(f"{f.laterality}{f.view}" for f in facts) == ["LCC", "LMLO", "RCC", "RMLO"]
    check_screening_exam(facts)


def test_extra_implant_displaced_view_is_allowed_and_a_missing_view_is_named(tmp_path: Path) -> None:
    facts = _facts(write_mammography_study(tmp_path, make_patient(1)).files)
    extra = ImageFacts("1.2.840.10008.5.1.4.1.1.1.2", "MG", "R", "CC", True)  # an ID view of the right CC
    check_screening_exam([*facts, extra])
    without_lmlo = [f for f in facts if f"{f.laterality}{f.view}" != "LMLO"]
    with pytest.raises(NotScreeningExam) as refused:
        check_screening_exam(without_lmlo)
    assert refused.value.problems == ("the left breast has no MLO view (LMLO)",)


def test_single_breast_exam_only_when_the_request_says_so(tmp_path: Path) -> None:
    facts = [f for f in _facts(write_mammography_study(tmp_path, make_patient(1)).files) if f.laterality == "R"]
    check_screening_exam(facts, single_breast="R")
    with pytest.raises(NotScreeningExam):
        check_screening_exam(facts)
    with pytest.raises(NotScreeningExam, match="not a screening"):
        check_screening_exam(facts, single_breast="L")


def test_for_processing_images_do_not_count(tmp_path: Path) -> None:
    facts = _facts(write_mammography_study(tmp_path, make_patient(1)).files)
    processing = [ImageFacts("1.2.840.10008.5.1.4.1.1.1.2.1", f.modality, f.laterality, f.view, False) for f in facts]
    with pytest.raises(NotScreeningExam, match="not a screening") as refused:
        check_screening_exam(processing)
    assert "no Digital Mammography For Presentation image" in refused.value.problems[0]


def test_a_ct_is_refused_with_its_modality_named(tmp_path: Path) -> None:
    facts = _facts(write_ct_study(tmp_path, make_patient(2, sex="M")).files[:3])
    with pytest.raises(NotScreeningExam) as refused:
        check_screening_exam(facts)
    assert refused.value.problems == ("no Digital Mammography For Presentation image (modalities found: CT)",)


def test_only_acr_1_and_2_are_read_again(l1: Reading) -> None:
    check_eligible(l1)
    with pytest.raises(NotEligible) as refused:
        check_eligible(reading(left=(4, "C")))
    assert refused.value.problems == ("left breast: ACR 4 (a second read is for ACR 1 or 2)",)
