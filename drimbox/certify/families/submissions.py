"""The registry's answers to bad ITI-41 submissions (profile ``registry``): each scenario submits one
deliberately broken submission — everything else as a source node builds it (DMP metadata, DSG
signature document, signed VIHF) — and requires a Failure with a RegistryError of the right code
whose context names what is wrong. The submissions are for a fresh test patient of the kit's own, so
a registry that wrongly took one pollutes no real exam.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from lxml import etree

from drimbox.certify.model import Family, Profile, Scenario
from drimbox.certify.probe import Probe
from drimbox.certify.soapwire import RIM, XdsWire, patient_cx
from drimbox.certify.wire import token_claims
from drimbox.config import PublishSettings
from drimbox.devnet.network import demo_oru
from drimbox.hl7.parse import parse_report
from drimbox.publish.submission import Manifest, SubmissionPolicy, build_submission
from drimbox.publish.xds.rim import submit_objects_request
from drimbox.testdata import make_patient, write_ct_study

__all__ = ["SCENARIOS"]

_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
_METADATA_ERROR = "XDSRegistryMetadataError"
_REF = "IHE ITI TF-3 §4.2.4; DMP (CI-SIS) XDS metadata rules"


def _kos_entry(metadata: etree._Element) -> etree._Element:
    return next(e for e in metadata.iter(f"{RIM}ExtrinsicObject") if e.get("mimeType") == "application/dicom")


def _wrong_patient(metadata: etree._Element, patient: str) -> etree._Element:
    local = patient.split("^", 1)[0][:8] + "^^^&1.2.250.1.999.1.1&ISO^PI"
    replaced = 0
    for element in metadata.iter(f"{RIM}ExternalIdentifier"):
        if element.get("value") == patient:
            element.set("value", local)
            replaced += 1
    assert replaced, "the submission names no patient to replace"  # the kit's own bug, never the target's
    return metadata


def _drop_type_code(metadata: etree._Element, _: str) -> etree._Element:
    entry = _kos_entry(metadata)
    for classification in entry.findall(f"{RIM}Classification"):
        if classification.get("classificationScheme") == _TYPE_CODE:
            entry.remove(classification)
    return metadata


def _unknown_class_code(metadata: etree._Element, _: str) -> etree._Element:
    for classification in _kos_entry(metadata).findall(f"{RIM}Classification"):
        if classification.get("classificationScheme") == _CLASS_CODE:
            classification.set("nodeRepresentation", "99")
    return metadata


def _no_study_reference(metadata: etree._Element, _: str) -> etree._Element:
    for slot in _kos_entry(metadata).findall(f"{RIM}Slot"):
        if slot.get("name") == "urn:ihe:iti:xds:2013:referenceIdList":
            for value in list(slot.iter(f"{RIM}Value")):
                if "studyInstanceUID" in (value.text or ""):
                    value.getparent().remove(value)
    return metadata


def _submit_broken(probe: Probe, breaks: Callable[[etree._Element, str], etree._Element], code: str,
                   words: tuple[str, ...], what: str) -> None:
    probe.require(probe.target.repository_xds is not None, "the repository's ITI-41 endpoint is not known")
    seed = secrets.randbelow(10**6) + 2_000_000
    study = write_ct_study(probe.data.workdir / f"bad-{seed}", make_patient(seed, sex="F", with_ins=True),
                           series=1, slices_per_series=1, rows=16, cols=16, seed=seed)
    report = parse_report(demo_oru(study, control_id=f"CERT-BAD-{seed}"))
    data = study.files[0].read_bytes()  # any DICOM bytes: the registry judges the metadata
    manifest = Manifest(f"2.25.{secrets.randbits(100)}", data, tuple(i.sop_instance_uid for i in study.instances),
                        modalities=("CT",), body_parts=("CHEST",))
    rpps = str(token_claims(probe.wire.token).get("rpps") or "10101010101")
    xds = XdsWire(probe, rpps)
    policy = SubmissionPolicy.from_settings(PublishSettings(organisation_id=report.organisation.id_nat_struct or
                                                            "1CERTIFY0001"), "drimbox-certify")
    built = build_submission(report, manifest, policy, xds.signer, submission_uid=f"2.25.{secrets.randbits(100)}",
                             now=datetime.now(UTC))
    patient = patient_cx(str(study.patient.ins), str(study.patient.ins_oid))
    metadata = breaks(submit_objects_request(built.submission), patient)
    probe.uses(f"an ITI-41 submission built by the kit for test patient {study.patient.ins}, with {what}")
    answer = xds.provide_and_register(str(probe.target.repository_xds), metadata, list(built.documents), patient,
                                      f"ITI-41 with {what}", structure_id=report.organisation.id_nat_struct or None)
    probe.require(not answer.success, f"the registry answered {answer.status} to a submission with {what}")
    matching = [(c, ctx) for c, ctx in answer.errors if c == code and any(w in ctx for w in words)]
    probe.check(bool(matching), f"no RegistryError {code} naming {' / '.join(words)} for a submission with {what}; "
                                f"got {answer.errors or answer.status}")


def _scenario(sid: str, title: str, breaks: Callable[[etree._Element, str], etree._Element],
              words: tuple[str, ...], what: str, code: str = _METADATA_ERROR) -> Scenario:
    return Scenario(sid, Family.XDS, title, frozenset({Profile.REGISTRY}),
                    lambda probe: _submit_broken(probe, breaks, code, words, what), reference=_REF)


SCENARIOS: tuple[Scenario, ...] = (
    _scenario("xds.registry.bad-patient-id", "The registry refuses a patient id that is not an INS (local IPP)",
              _wrong_patient, ("patient", "INS", "1.2.250.1.999.1.1"), "a local patient id instead of the INS"),
    _scenario("xds.registry.missing-type-code", "The registry refuses a KOS entry without typeCode", _drop_type_code,
              ("typeCode",), "no typeCode on the KOS entry"),
    _scenario("xds.registry.unknown-class-code", "The registry refuses a KOS entry whose classCode is not 31",
              _unknown_class_code, ("classCode",), "classCode 99 on the KOS entry"),
    _scenario("xds.registry.bad-reference-ids", "The registry refuses a KOS entry whose referenceIdList lacks the "
              "Study Instance UID", _no_study_reference, ("referenceIdList", "studyInstanceUID", "Study Instance UID"),
              "no studyInstanceUID in referenceIdList"),
)
