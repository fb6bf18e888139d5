"""The study page's XDM export adapter on a retrieved exam laid out as the retriever leaves it."""

from __future__ import annotations

import shutil
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

from drimbox.retrieve.model import Actor, Exam, InstanceRef, PatientTraits, SeriesRef
from drimbox.retrieve.xdm import XdmOrigin
from drimbox.testdata import make_patient, write_ct_study
from drimbox.web import xdm_exporter


def test_export_of_a_retrieved_exam(tmp_path: Path) -> None:
    patient = make_patient(7, sex="M", with_ins=True)
    assert patient.ins is not None
    study = write_ct_study(tmp_path / "generated", patient, series=1, slices_per_series=3, rows=32, cols=32)
    kos_uid = "1.2.826.0.1.3680043.8.498.1"
    work_dir = tmp_path / "retrieved"
    for instance in study.instances:
        target = work_dir / kos_uid / instance.series_instance_uid / f"{instance.sop_instance_uid}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(instance.path, target)
    series_uid = study.instances[0].series_instance_uid
    exam = Exam(kos_uid=kos_uid, entry_uuid="urn:uuid:1", repository_unique_id="1.2.3",
                study_uid=study.study_instance_uid, accession_number=study.accession_number,
                performed=datetime(2025, 1, 14, 9, 0, tzinfo=UTC), modalities=("CT",), description="Scanner",
                body_part="CHEST", source_site="site-a",
                series=(SeriesRef(series_uid, f"https://127.0.0.2/dicom-web/studies/x/series/{series_uid}",
                                  tuple(InstanceRef(i.sop_class_uid, i.sop_instance_uid) for i in study.instances),
                                  "CT"),))
    traits = PatientTraits(ins=patient.ins, ins_oid=patient.ins_oid, birth_name=patient.family,
                           first_given_name=patient.given, birth_date=date(1970, 1, 1), sex="M")
    actor = Actor(subject="rpps:1", rpps="1", role="radiologist", display_name=None, token="t")
    export = xdm_exporter(work_dir=work_dir, origin=XdmOrigin("site-b", "1.2.3"), spool_dir=tmp_path / "spool")
    archive = export(exam, traits, actor)
    assert archive.parent == tmp_path / "spool"
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert "IHE_XDM/SUBSET01/METADATA.XML" in names and "README.TXT" in names
    assert sum(1 for n in names if n.startswith("IHE_XDM/SUBSET01/DICOM/")) == 3
