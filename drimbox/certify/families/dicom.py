"""DICOM conformance of the KOS the node publishes: dciodvfy (PS3.3) and the DESIGN §3 rules —
the INS triple, a RetrieveURL per series pointing at the node's network face, every instance referenced.

The KOS looked at is the one the node published for the kit's own study (so "every instance" is
known exactly), read back from the registry.
"""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

from pydicom import Dataset

from drimbox.certify.model import Family, Profile, Scenario
from drimbox.certify.probe import Probe
from drimbox.certify.provision import Publication

__all__ = ["INS_ISSUER", "INS_OIDS", "SCENARIOS", "kos_instances"]

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
INS_ISSUER = "ASIP-SANTE-INS-NIR"
INS_OIDS = frozenset({"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"})


def kos_instances(kos: Dataset) -> dict[str, set[str]]:
    """Series UID → the SOP Instance UIDs the KOS's evidence lists."""
    out: dict[str, set[str]] = {}
    for study in kos.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            out.setdefault(str(series.SeriesInstanceUID), set()).update(
                str(i.ReferencedSOPInstanceUID) for i in series.get("ReferencedSOPSequence", []))
    return out


def _publication(probe: Probe) -> Publication:
    publication = probe.data.publication()
    probe.uses(f"KOS {publication.kos.SOPInstanceUID} the node published for the kit-produced study "
               f"(read back from the registry)")
    probe.evidence("data", "the KOS, as the registry returns it", str(publication.kos)[:6000])
    return publication


def _dciodvfy(probe: Probe) -> None:
    publication = _publication(probe)
    path = probe.data.workdir / "kos.dcm"
    path.write_bytes(publication.kos_bytes)
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    probe.evidence("tool", "dciodvfy kos.dcm", output or "(no output)")
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    probe.check(not errors, f"dciodvfy: {len(errors)} error(s): {'; '.join(errors[:3])}")
    kos = publication.kos
    probe.check(str(kos.SOPClassUID) == KOS_SOP_CLASS, f"SOP Class {kos.SOPClassUID}, not Key Object Selection")
    probe.check(kos.get("Modality") == "KO", f"Modality {kos.get('Modality')!r}, not KO")
    title = kos.get("ConceptNameCodeSequence")
    code = (str(title[0].CodeValue), str(title[0].CodingSchemeDesignator)) if title else None
    probe.check(code == ("113030", "DCM"), f"document title {code}, not (113030, DCM, Manifest)")


def _ins_triple(probe: Probe) -> None:
    kos = _publication(probe).kos
    patient = probe.data.study().study.patient
    probe.check(str(kos.get("PatientID", "")) == patient.ins, f"PatientID {kos.get('PatientID')!r} is not the INS "
                                                              f"{patient.ins}")
    probe.check(kos.get("IssuerOfPatientID") == INS_ISSUER, f"IssuerOfPatientID {kos.get('IssuerOfPatientID')!r}")
    qualifiers = kos.get("IssuerOfPatientIDQualifiersSequence")
    oid = str(qualifiers[0].get("UniversalEntityID", "")) if qualifiers else ""
    probe.check(oid == patient.ins_oid and oid in INS_OIDS, f"IssuerOfPatientIDQualifiers UniversalEntityID "
                                                            f"{oid!r}, expected {patient.ins_oid}")
    probe.check(bool(qualifiers) and qualifiers[0].get("UniversalEntityIDType") == "ISO",
                "UniversalEntityIDType is not ISO")
    others = kos.get("OtherPatientIDsSequence", [])
    probe.check(any(str(o.get("PatientID")) == patient.ins and o.get("IssuerOfPatientID") == INS_ISSUER
                    for o in others), "OtherPatientIDsSequence does not repeat the INS triple")


def _retrieve_urls(probe: Probe) -> None:
    kos = _publication(probe).kos
    network = probe.target.network_dicomweb
    probe.require(network is not None, "the node's network face is not known")
    assert network is not None
    expected = urlsplit(network)
    for study in kos.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            url = str(series.get("RetrieveURL", ""))
            if not probe.check(bool(url), f"series {series.SeriesInstanceUID}: no RetrieveURL (0008,1190)"):
                continue
            got = urlsplit(url)
            probe.check((got.scheme, got.netloc) == (expected.scheme, expected.netloc),
                        f"RetrieveURL {url} does not point at the node's network face {network}")
            probe.check(got.path.rstrip("/").endswith(f"/studies/{study.StudyInstanceUID}/series/"
                                                       f"{series.SeriesInstanceUID}"),
                        f"RetrieveURL {url} is not the WADO-RS URL of its series")


def _every_instance(probe: Probe) -> None:
    kos = _publication(probe).kos
    kit = probe.data.study()
    listed = kos_instances(kos)
    probe.check(set(listed) == set(kit.study.series_uids()), f"series in the KOS {sorted(listed)} ≠ series stored "
                                                             f"{list(kit.study.series_uids())}")
    every = set().union(*listed.values()) if listed else set()
    probe.check(every == kit.sop_uids(), f"the KOS references {len(every)} instances, {len(kit.sop_uids())} were "
                                         f"stored (missing {len(kit.sop_uids() - every)}, unknown "
                                         f"{len(every - kit.sop_uids())})")
    requests = kos.get("ReferencedRequestSequence", [])
    probe.check(any(str(r.get("AccessionNumber")) == kit.study.accession_number
                    and str(r.get("StudyInstanceUID")) == kit.study.study_instance_uid for r in requests),
                "ReferencedRequestSequence does not carry the accession number and Study Instance UID")


def _scenario(sid: str, title: str, check: object, requirement: str | None = None,
              reference: str = "DESIGN §3; ANS Validateur DICOM") -> Scenario:
    return Scenario(sid, Family.DICOM, title, frozenset({Profile.SOURCE}), check,  # type: ignore[arg-type]
                    requirement=requirement, reference=reference)


SCENARIOS: tuple[Scenario, ...] = (
    _scenario("dicom.kos.dciodvfy", "The published KOS passes dciodvfy and is a Manifest KOS", _dciodvfy,
              reference="PS3.3 A.35.4 (dciodvfy)"),
    _scenario("dicom.kos.ins", "The KOS identifies the patient by the INS triple (and repeats it)", _ins_triple,
              requirement="INS/va1.36"),
    _scenario("dicom.kos.retrieve-url", "A RetrieveURL per series, pointing at the node's network face",
              _retrieve_urls),
    _scenario("dicom.kos.every-instance", "Every stored instance referenced, the request keys present",
              _every_instance, requirement="SC.DB/PFI.01.01"),
)
