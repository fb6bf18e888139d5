"""Cross-validation: the report (CDA) ↔ KOS ↔ images in the PACS ↔ XDS metadata tell the same
story — same patient, accession, study, series and instance counts (ANS Cross-validateur).

The report is the one the kit sent over MLLP; the images are what the node's DICOMweb finds; the
KOS and the metadata are what the registry holds.
"""

from __future__ import annotations

import json

from drimbox.certify.families.dicom import kos_instances
from drimbox.certify.model import Family, Profile, Scenario
from drimbox.certify.probe import Probe

__all__ = ["SCENARIOS"]


def _coherence(probe: Probe) -> None:
    publication = probe.data.publication()
    kit = probe.data.study()
    probe.uses(f"the kit-produced study, its report (sent over MLLP) and KOS {publication.kos.SOPInstanceUID}")
    kos, doc, study = publication.kos, publication.document, kit.study
    # KOS ↔ report (the report's keys are the study's: the kit wrote both)
    probe.check(str(kos.get("StudyInstanceUID")) == study.study_instance_uid, "KOS StudyInstanceUID ≠ the report's")
    probe.check(str(kos.get("AccessionNumber", "")) == study.accession_number,
                f"KOS AccessionNumber {kos.get('AccessionNumber')!r} ≠ the report's {study.accession_number}")
    probe.check(str(kos.get("PatientID")) == study.patient.ins, "KOS patient ≠ the report's INS")
    # KOS ↔ XDS metadata
    probe.check(doc.get("subject", {}).get("identifier", {}).get("value") == str(kos.get("PatientID")),
                "XDS patient ≠ KOS patient")
    probe.check(doc.get("masterIdentifier", {}).get("value", "").endswith(str(kos.SOPInstanceUID)),
                "XDS uniqueId ≠ KOS SOP Instance UID")
    related = json.dumps(doc.get("context", {}).get("related", []))
    probe.check(study.study_instance_uid in related and study.accession_number in related,
                "XDS referenceIdList ≠ the KOS's study and accession")
    # KOS ↔ images in the PACS (through the node's DICOMweb)
    listed = kos_instances(kos)
    if probe.target.dicomweb:
        for series_uid, instances in listed.items():
            reply = probe.wire.get(f"{probe.target.dicomweb}/studies/{study.study_instance_uid}/series/{series_uid}"
                                   "/instances", headers={"Accept": "application/dicom+json"})
            found = {str(i.get("00080018", {}).get("Value", [""])[0]) for i in json.loads(reply.content or b"[]")} \
                if reply.status == 200 else set()
            probe.check(found == instances,
                        f"series {series_uid}: {len(instances)} in the KOS, {len(found)} in the PACS")
    counts = sum(len(v) for v in listed.values())
    probe.check(counts == len(study.instances), f"{counts} instances in the KOS, {len(study.instances)} in the exam")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("cross.report-kos-images-xds", Family.CROSS, "Report, KOS, PACS images and XDS metadata are coherent",
             frozenset({Profile.SOURCE}), _coherence, requirement="SC.DB/PFI.01.01",
             reference="ANS Cross-validateur (XDS.xml, KOS.dcm, IMG.dcm, CDA.xml)"),
)
