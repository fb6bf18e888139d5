"""The ANS HL7v2 samples, made sendable with a generated CDA (shared by the HL7 tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drimbox.testdata.ans_samples import ANS_PATIENT, fill_sample, sample_facts
from drimbox.testdata.cda import ReportSpec, make_report_cda

REPO = Path(__file__).resolve().parents[2]
DRIM_M_DATA = REPO.parent / "shared" / "drim-m-data"
HL7_DIR = DRIM_M_DATA / "Referencement_DRIMBox" / "Jeux_de_donnees" / "HL7v2"


@dataclass(frozen=True)
class Expected:
    """What the ANS sample says (read off the files; see drim-m-data/MANIFEST.md)."""

    path: str
    message_type: str
    birth_place: str
    sender_struct: str
    sender_name: str
    invisible_to_patient: bool
    invisible_to_legal: bool
    confidentiality_modified: bool
    withdraw: bool = False
    update: bool = False
    double_encoded: bool = False
    """The original carries double-encoded UTF-8 (MANIFEST "data quirk"); the generated CDA does too."""


AMBROISE = ("1750803447", "Centre de radiologie Ambroise")
SENDING = ("1300017985", "Sending Facility")

SAMPLES = {
    "C-MDM": Expected("Examen_C/CR_C-MDM.elided.hl7", "MDM^T02", "51215", *AMBROISE, True, False, False),
    "C-ORU": Expected("Examen_C/CR_C-ORU.elided.hl7", "ORU^R01", "51215", *AMBROISE, True, False, False),
    "E-MDM": Expected(
        "Examen_E/CR_E-MDM.elided.hl7", "MDM^T02", "63220", *SENDING, True, True, False, double_encoded=True
    ),
    "E-ORU": Expected("Examen_E/CR_E-ORU.elided.hl7", "ORU^R01", "51215", *AMBROISE, True, False, False),
    "F-MDM": Expected(
        "Examen_F/CR_F-MDM.elided.hl7", "MDM^T02", "63220", *SENDING, True, True, False, double_encoded=True
    ),
    "F-ORU": Expected(
        "Examen_F/CR_F-ORU.elided.hl7", "ORU^R01", "63220", *SENDING, True, True, False, double_encoded=True
    ),
    "G1-MDM": Expected("Examen_G/CR_G1-MDM.elided.hl7", "MDM^T02", "51215", *SENDING, True, True, False),
    "G1-ORU": Expected("Examen_G/CR_G1-ORU.elided.hl7", "ORU^R01", "51215", *AMBROISE, True, False, False),
    "G1_MAJ-MDM": Expected(
        "Examen_G/CR_G1_MAJ-MDM.elided.hl7", "MDM^T10", "51215", *AMBROISE, False, False, True, update=True
    ),
    "G1_MAJ-ORU": Expected(
        "Examen_G/CR_G1_MAJ-ORU.elided.hl7",
        "ORU^R01",
        "63220",
        *SENDING,
        False,
        False,
        True,
        update=True,
        double_encoded=True,
    ),
    "G2-MDM": Expected("Examen_G/CR_G2-MDM.elided.hl7", "MDM^T02", "51215", *AMBROISE, True, False, False),
    "G2-ORU": Expected("Examen_G/CR_G2-ORU.elided.hl7", "ORU^R01", "51215", *AMBROISE, True, False, False),
    "I-MDM": Expected(
        "Examen_I/CR_I_Depublication-MDM.elided.hl7", "MDM^T04", "63220", *AMBROISE, True, False, False, withdraw=True
    ),
    "I-ORU": Expected(
        "Examen_I/CR_I_Depublication-ORU.elided.hl7",
        "ORU^R01",
        "63220",
        *SENDING,
        True,
        True,
        False,
        withdraw=True,
        double_encoded=True,
    ),
}

_EXAMS = {"C": "103", "E": "105", "F": "106", "G1": "107", "G1_MAJ": "107", "G2": "108", "I": "110"}


def report_spec(name: str) -> ReportSpec:
    """The CDA a sample carries: its exam's keys, TXA-12/13 ids, version 2 for the update."""
    expected = SAMPLES[name]
    exam = name.rsplit("-", 1)[0]
    number = _EXAMS[exam]
    facts = sample_facts((HL7_DIR / expected.path).read_bytes())
    return ReportSpec(
        patient=ANS_PATIENT,
        study_instance_uid=f"1.2.250.1.213.4.5.2.1.{number}",
        accession_number=facts.obr_accession or f"ACN{number}",
        document_id=facts.document_id or f"1.2.250.1.213.4.5.4.{number}{'2' if expected.update else ''}",
        set_id=f"D52DE737-001D-4031-B571-0A0ED7C42{number}",
        version_number=2 if expected.update else 1,
        parent_document_id=(facts.parent_document_id or f"1.2.250.1.213.4.5.4.{number}") if expected.update else None,
        placer_order=f"OPN{number}",
    )


def sample_message(
    name: str, *, control_id: str = "MSG0001", spec: ReportSpec | None = None, cda: bytes | None = None
) -> bytes:
    """The ANS sample ``name`` with its generated CDA and filled MSH."""
    expected = SAMPLES[name]
    spec = spec or report_spec(name)
    document = cda if cda is not None else make_report_cda(spec, double_encoded=expected.double_encoded)
    return fill_sample((HL7_DIR / expected.path).read_bytes(), document, control_id=control_id)


def cr_message(name: str, *, control_id: str = "MSG0001") -> bytes:
    """A sample with segments separated by CR only (the HL7 standard) instead of the files' CRLF."""
    return sample_message(name, control_id=control_id).replace(b"\r\n", b"\r")
