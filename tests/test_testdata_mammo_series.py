"""``write_mammography_study(series_per_view=True)``: one series per view, as OHIF's ``@ohif/hpMammo`` needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from drimbox.testdata import MAMMOGRAPHY_VIEWS, make_patient, write_mammography_study


def test_one_series_per_view_same_views_as_the_single_series(tmp_path: Path) -> None:
    patient = make_patient(41, sex="F", with_ins=True)
    single = write_mammography_study(tmp_path / "one", patient, seed=7)
    split = write_mammography_study(tmp_path / "split", patient, seed=7, series_per_view=True)
    assert split.study_instance_uid == single.study_instance_uid
    assert split.sop_instance_uids() == single.sop_instance_uids()
    series = set()
    for number, (view, a, b) in enumerate(zip(MAMMOGRAPHY_VIEWS, single.files, split.files, strict=True), start=1):
        one, per_view = pydicom.dcmread(a), pydicom.dcmread(b)
        series.add(per_view.SeriesInstanceUID)
        assert (per_view.SeriesNumber, per_view.InstanceNumber) == (number, 1)
        assert per_view.SeriesDescription == f"{view[0]} {view[1:]}"  # 'R CC', 'L MLO'…
        assert per_view.ImageLaterality == view[0] and per_view.ViewPosition == view[1:]
        assert list(per_view.PatientOrientation) == list(one.PatientOrientation)
        assert per_view.ViewCodeSequence[0].CodeValue == ("399162004" if view.endswith("CC") else "399368009")
        assert np.array_equal(per_view.pixel_array, one.pixel_array)
        assert b.name == f"MG-{split.accession_number}-{number:02d}-0001.dcm"
    assert len(series) == 4 and pydicom.dcmread(single.files[0]).SeriesInstanceUID not in series
