"""C-FIND and C-ECHO round trips on a pooled association, with and without TCP_NODELAY.

Starts one Orthanc (with ``TCP_NODELAY=1``, as the devnet does) holding one small mammography
study, then times ``--count`` STUDY-level C-FINDs (one match: a pending and a final response)
and C-ECHOs through :class:`~drimbox.pacs.PacsClient`, once with the node's default socket tuning
and once with none (``no_tuning``): without it, the second response of each C-FIND waits for
the delayed ACK of the first (Nagle), ~40 ms on Linux.

Run: ``python bench/dimse_latency.py [--count 200]``. Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from drimbox.config import DimseSettings, LocalAE
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port
from drimbox.pacs import PacsClient, QueryLevel
from drimbox.pacs.sockets import SocketTuner, no_tuning, tune_socket
from drimbox.testdata import make_patient, write_mammography_study


def _percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"median {statistics.median(ms):6.2f} ms   p95 {p95:6.2f} ms   max {ms[-1]:6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dimse-latency-"))
    node = LocalAE(aet="DRIMBOX", host="127.0.0.2", port=free_port("127.0.0.2"))
    orthanc = OrthancProcess(workdir / "orthanc", aet="PACS", modalities={"node": (node.aet, node.host, node.port)})
    orthanc.start()
    try:
        study = write_mammography_study(workdir / "mg", make_patient(1), size="small")
        orthanc.upload(study.files)
        query = {"StudyInstanceUID": study.study_instance_uid, "PatientID": None, "AccessionNumber": None}
        tunings: dict[str, SocketTuner] = {"TCP_NODELAY (default)": tune_socket, "no socket tuning": no_tuning}
        for label, tune in tunings.items():
            with PacsClient(node, orthanc.remote_ae(), DimseSettings(), tune=tune) as client:
                client.echo()  # open the pooled association
                finds, echoes = [], []
                for _ in range(args.count):
                    started = time.perf_counter()
                    assert len(list(client.find(QueryLevel.STUDY, query))) == 1
                    finds.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    client.echo()
                    echoes.append(time.perf_counter() - started)
            print(f"{label}:")
            print(f"  C-FIND (1 match)  {_percentiles(finds)}")
            print(f"  C-ECHO            {_percentiles(echoes)}", flush=True)
    finally:
        orthanc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
