"""Publication throughput, end to end: HL7 ORU over MLLP in → KOS approved in the registry.

Starts a real Orthanc (the site's PACS, loaded with N small CT exams of the ANS test patient), the
registry service as a process (``drimbox registry serve``, SQLite) and a node in this process
(MLLP listener, outbox, workers, C-FIND walk, KOS build, DSG + VIHF signing, ITI-18 + ITI-41).
One RIS connection sends the N reports back to back; the clock runs from the first message to
the last job done. Prints ACK latency (p50/p95) and publications per second.

    python bench/publish_throughput.py --count 200 --workers 2
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import tomli_w

from drimbox.config import load_settings
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.pki import TestCA
from drimbox.devnet.ports import free_port
from drimbox.devnet.process import ChildProcess, tail
from drimbox.node import Node
from drimbox.publish.jobs import JobState
from drimbox.publish.outbox import Outbox
from drimbox.testdata.ans_samples import ANS_PATIENT, fill_sample
from drimbox.testdata.cda import ReportSpec, make_report_cda
from drimbox.testdata.exam import write_exam_study

ROOT = Path(__file__).resolve().parents[1]
ORU = ROOT.parent / "shared/drim-m-data/Referencement_DRIMBox/Jeux_de_donnees/HL7v2/Examen_G/CR_G1-ORU.elided.hl7"


def _exchange(sock: socket.socket, message: bytes) -> bytes:
    sock.sendall(b"\x0b" + message + b"\x1c\r")
    buffer = b""
    while b"\x1c\r" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the node closed the connection")
        buffer += chunk
    return buffer


def _registry(workdir: Path, ca: TestCA) -> tuple[ChildProcess, str]:
    port = free_port("127.0.0.1")
    script = Path(sys.executable).with_name("drimbox")
    child = ChildProcess(
        [
            str(script),
            "registry",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "registry"),
            "--trusted-ca-file",
            str(ca.cert_path),
        ],
        log_path=workdir / "registry.log",
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return child, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(tail(workdir / "registry.log"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="reports to publish")
    parser.add_argument("--workers", type=int, default=2, help="publication worker threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="publish-bench-") as tmp:
        work = Path(tmp)
        orthanc = OrthancProcess(work / "pacs", aet="PACS_A", modalities={"drimbox": ("DRIMBOX", "127.0.0.2", 11112)})
        orthanc.start()
        ca = TestCA.create(work / "pki")
        cert = ca.issue("site-a", hosts=["127.0.0.2"])
        registry, registry_url = _registry(work, ca)
        node: Node | None = None
        try:
            specs, files = [], []
            for i in range(args.count):
                spec = ReportSpec(
                    patient=ANS_PATIENT,
                    study_instance_uid=f"1.2.826.0.1.3680043.10.1097.{i}",
                    accession_number=f"BENCH{i:06d}",
                    document_id=f"1.2.826.0.1.3680043.10.1096.{i}",
                    set_id=f"BENCH-{i}",
                    modality="CT",
                )
                files += write_exam_study(
                    work / "exams" / str(i),
                    study_uid=spec.study_instance_uid,
                    accession=spec.accession_number,
                    patient=ANS_PATIENT,
                    modality="CT",
                ).files
                specs.append(spec)
            orthanc.upload(files)
            messages = [
                fill_sample(ORU.read_bytes(), make_report_cda(s), control_id=f"B{i}") for i, s in enumerate(specs)
            ]
            config = {
                "name": "site-a",
                "local": {"aet": "DRIMBOX", "host": "127.0.0.2", "port": free_port("127.0.0.2")},
                "pacs": {"aet": orthanc.aet, "host": orthanc.dicom_host, "port": orthanc.dicom_port},
                "http": {
                    "host": "127.0.0.2",
                    "port": free_port("127.0.0.2"),
                    "network_host": "127.0.0.2",
                    "network_port": free_port("127.0.0.2"),
                },
                "hl7": {"host": "127.0.0.1", "port": free_port("127.0.0.1")},
                "registry": {"base_url": registry_url},
                "storage": {"data_dir": str(work / "node-data")},
                "auth": {"dev_mode": True},
                "publish": {
                    "signing_cert_file": str(cert.cert_path),
                    "signing_key_file": str(cert.key_path),
                    "workers": args.workers,
                    "poll_s": 0.05,
                },
            }
            (work / "node.toml").write_text(tomli_w.dumps(config))
            settings = load_settings(work / "node.toml")
            node = Node(settings)
            node.start()
            latencies = []
            start = time.perf_counter()
            with socket.create_connection((settings.hl7.host, settings.hl7.port)) as sock:
                for message in messages:
                    sent = time.perf_counter()
                    answer = _exchange(sock, message)
                    latencies.append(time.perf_counter() - sent)
                    assert b"MSA|AA" in answer, answer
            acked = time.perf_counter() - start
            outbox = Outbox(work / "node-data" / "outbox.sqlite3")
            while (counts := outbox.counts()).get(JobState.DONE, 0) < args.count:
                assert not counts.get(JobState.DEAD_LETTER), counts
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
            outbox.close()
        finally:
            if node is not None:
                node.stop()
            registry.stop()
            orthanc.stop()
    latencies.sort()
    print(f"reports: {args.count}, workers: {args.workers}")
    print(
        f"MLLP ACK (durable enqueue): p50 {1000 * statistics.median(latencies):.1f} ms, "
        f"p95 {1000 * latencies[int(0.95 * (len(latencies) - 1))]:.1f} ms; all ACKed in {acked:.1f} s"
    )
    print(
        f"published (approved in the registry): {args.count / elapsed:.1f} publications/s "
        f"({1000 * elapsed / args.count:.0f} ms each on average, {elapsed:.1f} s in all)"
    )


if __name__ == "__main__":
    main()
