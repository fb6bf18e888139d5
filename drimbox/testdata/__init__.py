"""Synthetic DICOM studies for test fixtures, the demo and benchmarks (no patient data).

Every generator writes Part 10 files into a directory one instance at a time (never a whole study in
memory) and returns what it wrote. Output is deterministic: the same arguments give byte-identical
files, including UIDs, which are derived from the patient, date, modality and seed.

- :func:`write_mammography_study` — 4-view screening MG (For Presentation), with a burnt-in marker
  per view (see :func:`marker_specs`), small (416 x 320) or full size (3328 x 2560, ~17 MB/view).
- :func:`write_ct_study` — multi-series chest CT; :func:`write_mr_study` — one-series brain MR.
- :func:`write_large_instance` — one multi-frame instance of any size up to ~4 GiB, streamed.
- :func:`make_patient`, :func:`make_ins`, :func:`ins_key` — synthetic identities with a valid INS.
- :func:`make_report_cda` — a CI-SIS imaging report (CDA R2 level 1, PDF body) for a :class:`ReportSpec`.
- :func:`fill_sample`, :func:`sample_facts`, :data:`ANS_PATIENT` — the ANS HL7v2 samples made sendable.
- :func:`write_exam_study` — images under a chosen Study UID / accession number (the report's exam).

Each instance has PatientID = the local IPP (with its issuer) and, when the patient has an INS, an
OtherPatientIDsSequence item carrying the INS, issuer ``ASIP-SANTE-INS-NIR`` and the namespace OID,
as a French PACS holds them (DESIGN §3).
"""

from drimbox.testdata._dataset import GeneratedInstance, GeneratedStudy
from drimbox.testdata.ans_samples import ANS_IPP_OID, ANS_PATIENT, SampleFacts, fill_sample, sample_facts
from drimbox.testdata.cda import CdaAuthor, ReportSpec, make_report_cda, minimal_pdf
from drimbox.testdata.exam import write_exam_study
from drimbox.testdata.identity import (
    INS_ISSUER,
    INS_NIR_TEST_OID,
    LOCAL_ISSUER,
    Patient,
    Sex,
    ins_key,
    is_valid_ins,
    make_ins,
    make_patient,
)
from drimbox.testdata.large import MULTIFRAME_WORD_SC, write_large_instance
from drimbox.testdata.mammography import (
    MAMMOGRAPHY_VIEWS,
    MG_FOR_PRESENTATION,
    MammoSize,
    MarkerSpec,
    marker_specs,
    write_mammography_study,
)
from drimbox.testdata.tomographic import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, write_ct_study, write_mr_study

__all__ = [
    "ANS_IPP_OID",
    "ANS_PATIENT",
    "CT_IMAGE_STORAGE",
    "INS_ISSUER",
    "INS_NIR_TEST_OID",
    "LOCAL_ISSUER",
    "MAMMOGRAPHY_VIEWS",
    "MG_FOR_PRESENTATION",
    "MR_IMAGE_STORAGE",
    "MULTIFRAME_WORD_SC",
    "CdaAuthor",
    "GeneratedInstance",
    "GeneratedStudy",
    "MammoSize",
    "MarkerSpec",
    "Patient",
    "ReportSpec",
    "SampleFacts",
    "Sex",
    "fill_sample",
    "ins_key",
    "is_valid_ins",
    "make_ins",
    "make_patient",
    "make_report_cda",
    "marker_specs",
    "minimal_pdf",
    "sample_facts",
    "write_ct_study",
    "write_exam_study",
    "write_large_instance",
    "write_mammography_study",
    "write_mr_study",
]
