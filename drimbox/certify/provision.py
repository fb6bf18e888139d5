"""The data a run needs, produced by the kit itself through the target's declared interfaces.

The kit writes a synthetic CT study (one series, JPEG-LS lossless, a fresh patient with an INS per
run so runs never collide), C-STOREs it into the node's PACS (or STOW-RSs it to the node when no
DIMSE address is given), sends its validated report over MLLP as the RIS would (F1) and waits for
the KOS the node publishes to the registry (found by the patient's INS through the registry's MHD
view). Every step leaves evidence; the report says the data was produced by the kit.
"""

from __future__ import annotations

import io
import json
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless
from pynetdicom import AE

from drimbox.certify.model import Evidence, ScenarioFailed
from drimbox.certify.target import DimseAddress, HostPort, Target
from drimbox.certify.wire import Wire
from drimbox.devnet.network import demo_oru
from drimbox.testdata import CT_IMAGE_STORAGE, GeneratedStudy, make_patient, write_ct_study

__all__ = ["KitStudy", "Publication", "produce_study", "publish_report", "store_study", "wait_for_kos"]

KOS_MIME = "application/dicom"
_MLLP_START, _MLLP_END = b"\x0b", b"\x1c\r"
_STOW_BATCH = 50


@dataclass(slots=True)
class KitStudy:
    """The study the kit produced and where it put it."""

    study: GeneratedStudy
    bytes_total: int
    stored_via: str = ""
    seed: int = 0
    """What the study was generated from (same seed, same patient and UIDs)."""

    @property
    def series_uid(self) -> str:
        return self.study.series_uids()[0]

    def sop_uids(self) -> set[str]:
        return {i.sop_instance_uid for i in self.study.instances}


@dataclass(slots=True)
class Publication:
    """What the node published for the kit's study: the KOS and its registry entry."""

    kos: Dataset
    kos_bytes: bytes
    document: dict[str, Any]
    """The registry's DocumentReference of the KOS (MHD)."""
    related: list[dict[str, Any]] = field(default_factory=list)
    """Other current documents of the patient (the report, when the node publishes it)."""
    cda_sent: bytes = b""
    waited_s: float = 0.0


def produce_study(dest: Path, images: int, *, seed: int | None = None, rows: int = 512, cols: int = 512) -> KitStudy:
    """Write a one-series CT of ``images`` JPEG-LS lossless slices for a fresh patient (INS test OID)."""
    seed = seed if seed is not None else secrets.randbelow(10**6) + 1000
    patient = make_patient(seed, sex="M", with_ins=True)
    study = write_ct_study(dest, patient, series=1, slices_per_series=images, rows=rows, cols=cols, seed=seed,
                           transfer_syntax=JPEGLSLossless)
    return KitStudy(study, sum(p.stat().st_size for p in study.files), seed=seed)


def store_study(kit: KitStudy, target: Target, wire: Wire, sink: Callable[[Evidence], None]) -> None:
    """C-STORE the study into ``target.pacs``, or STOW-RS it to the node's DICOMweb root."""
    if target.pacs is not None:
        _c_store(kit, target.pacs, sink)
        kit.stored_via = f"C-STORE to {target.pacs}"
        return
    if target.dicomweb is None:
        raise ScenarioFailed("no way to put data on the target: give --pacs AET@host:port or --node URL")
    for start in range(0, len(kit.study.files), _STOW_BATCH):  # bounded requests: never the whole study in memory
        batch = kit.study.files[start:start + _STOW_BATCH]
        boundary = f"kit-{secrets.token_hex(8)}"
        body = io.BytesIO()
        for path in batch:
            body.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            body.write(path.read_bytes())
            body.write(b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
        reply = wire.request("POST", f"{target.dicomweb}/studies", content=body.getvalue(),
                             title=f"STOW-RS of instances {start + 1}-{start + len(batch)} of the kit's study",
                             headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                                                      f'boundary={boundary}', "Accept": "application/dicom+json"})
        if reply.status != 200:
            raise ScenarioFailed(f"STOW-RS of the kit's study answered {reply.status}")
    kit.stored_via = f"STOW-RS to {target.dicomweb}"


def _c_store(kit: KitStudy, pacs: DimseAddress, sink: Callable[[Evidence], None]) -> None:
    ae = AE(ae_title="DRIMBOX_CERT")
    for syntax in (JPEGLSLossless, ExplicitVRLittleEndian):  # one context per syntax: the PACS picks per context
        ae.add_requested_context(CT_IMAGE_STORAGE, syntax)
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.aet)
    if not assoc.is_established:
        sink(Evidence("dimse", f"A-ASSOCIATE to {pacs}", "association rejected or aborted"))
        raise ScenarioFailed(f"could not associate with the PACS {pacs}")
    statuses: dict[int, int] = {}
    try:
        for path in kit.study.files:
            status = assoc.send_c_store(pydicom.dcmread(path))
            code = int(status.Status) if "Status" in status else -1
            statuses[code] = statuses.get(code, 0) + 1
    finally:
        assoc.release()
    sink(Evidence("dimse", f"C-STORE of {len(kit.study.files)} instances to {pacs}",
                  "\n".join(f"status 0x{code:04X}: {n} instance(s)" for code, n in sorted(statuses.items()))))
    if set(statuses) != {0}:
        raise ScenarioFailed(f"the PACS did not store every instance: {statuses}")


def publish_report(kit: KitStudy, hl7: HostPort, sink: Callable[[Evidence], None], *, timeout: float = 30.0) -> str:
    """Send the study's validated report (ORU^R01, CDA in OBX-5) over MLLP; return the MSA code."""
    message = demo_oru(kit.study, control_id=f"CERT-{kit.study.accession_number}")
    with socket.create_connection((hl7.host, hl7.port), timeout=timeout) as sock:
        sock.sendall(_MLLP_START + message + _MLLP_END)
        answer = b""
        while _MLLP_END not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    shown = b"\r\n".join(s if not s.startswith(b"OBX|1|") else s[:120] + b"...(base64 CDA)"
                         for s in message.split(b"\r"))
    sink(Evidence("hl7", f"ORU^R01 over MLLP to {hl7}", shown.decode("utf-8", "replace") + "\n\nACK:\n"
                  + answer.strip(b"\x0b\x1c\r").replace(b"\r", b"\r\n").decode("utf-8", "replace")))
    msa = next((line for line in answer.split(b"\r") if line.startswith(b"MSA")), b"MSA|??")
    return msa.split(b"|")[1].decode()


def _documents(wire: Wire, fhir: str, kit: KitStudy) -> list[dict[str, Any]]:
    patient = kit.study.patient
    reply = wire.get(f"{fhir}/DocumentReference", title="MHD find by INS",
                     params={"patient.identifier": f"urn:oid:{patient.ins_oid}|{patient.ins}"})
    if reply.status != 200:
        return []
    bundle = json.loads(reply.content)
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"].get("status") == "current"]


def wait_for_kos(kit: KitStudy, fhir: str, wire: Wire, *, timeout_s: float = 120.0) -> Publication:
    """Poll the registry until the KOS of the kit's study is there; read it."""
    started = time.monotonic()
    sink = wire.sink
    wire.sink = lambda _: None  # polls are not evidence; the final exchange is
    try:
        while True:
            docs = _documents(wire, fhir, kit)
            kos_docs = [d for d in docs if d["content"][0]["attachment"].get("contentType") == KOS_MIME]
            if kos_docs or time.monotonic() - started > timeout_s:
                break
            time.sleep(0.5)
    finally:
        wire.sink = sink
    docs = _documents(wire, fhir, kit)
    kos_docs = [d for d in docs if d["content"][0]["attachment"].get("contentType") == KOS_MIME]
    if not kos_docs:
        raise ScenarioFailed(f"no KOS of the kit's study appeared in the registry within {timeout_s:.0f} s")
    document = kos_docs[0]
    blob = wire.get(document["content"][0]["attachment"]["url"], title="MHD read the KOS")
    kos = pydicom.dcmread(io.BytesIO(blob.content))
    return Publication(kos, blob.content, document, [d for d in docs if d is not document],
                       waited_s=time.monotonic() - started)
