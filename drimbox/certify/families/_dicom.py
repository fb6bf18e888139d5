"""Helpers the DICOMweb-facing families share: the ANS Accept header, reading DICOM parts."""

from __future__ import annotations

import io

import pydicom
from pydicom import Dataset
from pydicom.errors import InvalidDicomError

from drimbox.certify.multipart import media_params, parse_multipart
from drimbox.certify.probe import Probe
from drimbox.certify.wire import Reply

__all__ = ["ANS_ACCEPT", "ANS_SYNTAXES", "LOSSLESS_SYNTAXES", "dicom_parts", "kos_headers"]

ANS_SYNTAXES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.1.2.4.70", "0.9"), ("1.2.840.10008.1.2.4.80", "0.8"), ("1.2.840.10008.1.2.4.91", "0.6"),
    ("1.2.840.10008.1.2.4.50", "0.5"), ("1.2.840.10008.1.2.4.51", "0.5"), ("1.2.840.10008.1.2.4.100", "0.5"),
    ("1.2.840.10008.1.2.4.101", "0.5"), ("1.2.840.10008.1.2.4.102", "0.5"), ("1.2.840.10008.1.2.4.103", "0.5"),
    ("1.2.840.10008.1.2.1", "0.4"),
)
ANS_ACCEPT = "".join(f'multipart/related; type="application/dicom";transfer-syntax={ts};q={q};boundary=**,'
                     for ts, q in ANS_SYNTAXES)
"""The Accept header the ANS WADO-RS validator sends (its sample, verbatim: ten ranges, trailing comma)."""

LOSSLESS_SYNTAXES = frozenset({
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.5",
})
"""Transfer syntaxes that keep every pixel (a lossless image must never leave in another)."""


def kos_headers(kos_uid: str, accept: str = ANS_ACCEPT) -> dict[str, str]:
    """The headers of a consumer's retrieval in a manifest's scope (F7)."""
    return {"Accept": accept, "KOS-SOPInstanceUID": kos_uid}


def dicom_parts(probe: Probe, reply: Reply, *, offered: frozenset[str] | None = None) -> list[Dataset]:
    """The DICOM instances of a WADO-RS multipart response, every deviation recorded as a finding."""
    body = parse_multipart(reply.content_type, reply.content)
    for problem in body.problems:
        probe.check(False, f"multipart: {problem}")
    _, params = media_params(reply.content_type)
    declared = params.get("transfer-syntax")
    datasets: list[Dataset] = []
    for index, part in enumerate(body.parts, 1):
        media, part_params = media_params(part.headers.get("content-type", ""))
        probe.check(media == "application/dicom", f"part {index}: Content-Type {media!r}, not application/dicom")
        try:
            ds = pydicom.dcmread(io.BytesIO(part.body), stop_before_pixels=True)
        except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
            probe.check(False, f"part {index}: not a DICOM Part 10 instance ({exc})")
            continue
        syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
        part_declared = part_params.get("transfer-syntax") or declared
        probe.check(part_declared is None or part_declared == syntax,
                    f"part {index}: declared transfer-syntax {part_declared}, file meta says {syntax}")
        if offered is not None:
            probe.check(syntax in offered, f"part {index}: transfer syntax {syntax} was not offered in Accept")
        probe.check(syntax in LOSSLESS_SYNTAXES, f"part {index}: lossless data sent in {syntax}, not a lossless syntax")
        datasets.append(ds)
    return datasets
