"""Make the ANS homologation HL7v2 samples sendable: a CDA in place of the elided payload.

The samples of ``drim-m-data/Referencement_DRIMBox/Jeux_de_donnees/HL7v2/`` are stored with OBX-5.5
replaced by ``ELIDED_BASE64_CDA_<N>_CHARS`` and MSH-3…6, MSH-10 left as ``{{placeholders}}`` (as in
the originals). :func:`fill_sample` puts a generated report (:mod:`drimbox.testdata.cda`, base64)
and real values in their place, keeping everything else byte for byte (CRLF included);
:func:`sample_facts` reads what the generated report must agree with (TXA-12/13, OBR accession).

The samples' patient is the ANS test patient PAT-TROIS DOMINIQUE (:data:`ANS_PATIENT`), known to
the DMP test environment.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from drimbox.testdata.identity import INS_NIR_TEST_OID, Patient

__all__ = ["ANS_IPP_OID", "ANS_PATIENT", "SampleFacts", "fill_sample", "sample_facts"]

ANS_PATIENT = Patient(
    ipp="IPP101",
    family="PAT-TROIS",
    given="DOMINIQUE",
    birth_date="19790328",
    sex="F",
    ins="279035121518989",
    ins_oid=INS_NIR_TEST_OID,
    ipp_issuer="AUT-AFFECTATION",
)
"""The patient of every ANS HL7v2 sample (PID-3, PID-5, PID-7, PID-8)."""
ANS_IPP_OID = "1.2.250.1.213.4.5.2.4"
"""Assigning authority of the samples' IPP (PID-3.4.2)."""

_TOKEN = re.compile(rb"ELIDED_BASE64_CDA_(\d+)_CHARS")
_PLACEHOLDERS = ("applicationSupplier", "facilitySupplier", "applicationReceiver", "facilityReceiver", "idMessage")


@dataclass(frozen=True)
class SampleFacts:
    """What an elided sample says about the report it carried."""

    message_type: str
    """MSH-9.1^MSH-9.2, e.g. ``MDM^T10``."""
    document_id: str | None
    """TXA-12 (MDM only): the CDA ``id`` the report must have."""
    parent_document_id: str | None
    """TXA-13 (MDM update): the id of the replaced version."""
    obr_accession: str | None
    """OBR-18 (ORU only): the accession number of the order."""
    elided_length: int
    """N of the token: length of the original base64 CDA."""


def _fields(sample: bytes, segment: bytes) -> list[bytes] | None:
    for line in re.split(rb"\r\n|\r|\n", sample):
        if line.startswith(segment + b"|"):
            return line.split(b"|")
    return None


def sample_facts(sample: bytes) -> SampleFacts:
    """Read the message type, TXA-12/13, OBR-18 and the elided length of an ANS sample."""
    msh = _fields(sample, b"MSH") or []
    kind = msh[8].split(b"^") if len(msh) > 8 else [b""]
    txa = _fields(sample, b"TXA")
    obr = _fields(sample, b"OBR")
    token = _TOKEN.search(sample)

    def field(fields: list[bytes] | None, number: int) -> str | None:
        if fields is None or number >= len(fields) or not fields[number]:
            return None
        return fields[number].decode()

    return SampleFacts(
        message_type=b"^".join(kind[:2]).decode(),
        document_id=field(txa, 12),
        parent_document_id=field(txa, 13),
        obr_accession=field(obr, 18),
        elided_length=int(token.group(1)) if token else 0,
    )


def fill_sample(
    sample: bytes,
    cda: bytes,
    *,
    control_id: str,
    sending_application: str = "RIS_TEST",
    sending_facility: str = "CENTRE_AMBROISE",
    receiving_application: str = "DRIMBOX",
    receiving_facility: str = "CENTRE_AMBROISE",
    timestamp: str = "20250114103500+0100",
) -> bytes:
    """The sample with ``cda`` (base64) in OBX-5.5 and its MSH placeholders filled.

    Parameters
    ----------
    sample
        The bytes of a ``*.elided.hl7`` file.
    cda
        The CDA report to carry (XML bytes).
    control_id
        MSH-10.
    sending_application, sending_facility, receiving_application, receiving_facility
        MSH-3 to MSH-6.
    timestamp
        MSH-7 (the samples hold ``{{idMessage}}`` there too, followed by an empty MSH-8).

    Raises
    ------
    ValueError
        The sample has no elided token.
    """
    if _TOKEN.search(sample) is None:
        raise ValueError("not an elided ANS sample: no ELIDED_BASE64_CDA_<N>_CHARS token")
    filled = _TOKEN.sub(base64.b64encode(cda), sample, count=1)
    values = dict(
        zip(
            _PLACEHOLDERS,
            (sending_application, sending_facility, receiving_application, receiving_facility, control_id),
            strict=True,
        )
    )
    # MSH-7 is the first "{{idMessage}}", the one followed by the empty MSH-8.
    filled = filled.replace(b"|{{idMessage}}||", b"|" + timestamp.encode("ascii") + b"||", 1)
    for name, value in values.items():
        filled = filled.replace(b"{{" + name.encode() + b"}}", value.encode("ascii"))
    return filled
