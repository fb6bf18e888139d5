"""Retrieval throughput site A → site B over the network (F7), against a running ``drimbox demo``.

Reads ``WORKDIR/endpoints.json`` (the demo contract), gets a practitioner token with its
``token_command``, finds every published KOS of the demo's screening patient and CT patient in the
registry (MHD view), then, per exam:

* **source serving** — every series' RetrieveURL fetched by **curl** from site A's network face with
  the test tool's client certificate (mutual TLS), the token and ``KOS-SOPInstanceUID``: what a
  consumer can get at best from the source (first run cold: site A's cache is filled from its PACS);
* **consumer retrieval** — ``drimbox fetch --config site-b/node.toml --ins … --study …`` run as a
  process and timed from outside: the whole consumer pipeline (registry look-up, parallel series,
  KOS checks, fsynced files).

Run: ``python bench/network_retrieve.py --workdir /tmp/drimbox-demo [--runs 3]`` while
``drimbox demo --workdir /tmp/drimbox-demo`` runs (its full-size mammography is ~68 MB). Not a test:
it only prints.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydicom import dcmread

from drimbox.testdata import make_patient

ACCEPT = 'Accept: multipart/related; type="application/dicom"; transfer-syntax=*'


def _token(endpoints: dict[str, Any], *extra: str) -> str:
    command = [*endpoints["token_command"], *extra]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def _exams(endpoints: dict[str, Any], token: str) -> list[tuple[str, str, str, list[str]]]:
    """(patient INS, study UID, KOS UID, series RetrieveURLs) of every published KOS of the demo's patients."""
    found = []
    fhir = endpoints["registry"]["fhir"]
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        for patient in (make_patient(1, sex="F", with_ins=True), make_patient(2, sex="M", with_ins=True)):
            bundle = client.get(f"{fhir}/DocumentReference",
                                params={"patient.identifier": f"urn:oid:{patient.ins_oid}|{patient.ins}"}).json()
            for entry in bundle.get("entry", []):
                attachment = entry["resource"]["content"][0]["attachment"]
                if attachment["contentType"] != "application/dicom":
                    continue
                with tempfile.TemporaryFile() as fh:
                    fh.write(client.get(attachment["url"]).content)
                    fh.seek(0)
                    kos = dcmread(fh)
                urls = [s.RetrieveURL for item in kos.CurrentRequestedProcedureEvidenceSequence
                        for s in item.ReferencedSeriesSequence]
                found.append((str(patient.ins), str(kos.StudyInstanceUID), str(kos.SOPInstanceUID), urls))
    return found


def _curl(url: str, endpoints: dict[str, Any], token: str, kos_uid: str) -> tuple[int, float]:
    tls = endpoints["tls"]
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", "--cacert", tls["ca"],
         "--cert", tls["client_cert"], "--key", tls["client_key"], "-H", ACCEPT, "-H", f"Authorization: Bearer {token}",
         "-H", f"KOS-SOPInstanceUID: {kos_uid}", url],
        capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    endpoints = json.loads((args.workdir / "endpoints.json").read_text())
    token = _token(endpoints)  # the test tool's (curl presents the tool's certificate)
    # Site B forwards its user's token: one issued to site B's client (tokens are bound to their node).
    site_b_token = _token(endpoints, "--client", "site-b")
    site_b = next(n for n in endpoints["nodes"] if n["name"] == "site-b")
    drimbox = endpoints["token_command"][0]
    for ins, study, kos_uid, urls in _exams(endpoints, token):
        serving = []
        for _ in range(args.runs):
            size, seconds = 0, 0.0
            for url in urls:
                s, t = _curl(url, endpoints, token, kos_uid)
                size, seconds = size + s, seconds + t
            serving.append(size / 1e6 / seconds)
        print(f"study {study[-12:]}: {size / 1e6:.1f} MB in {len(urls)} series; source serving (curl, mTLS): "
              f"{' '.join(f'{r:.0f}' for r in serving)} MB/s")
        rates = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as scratch:
                started = time.perf_counter()
                # A fresh work directory per run: otherwise the second run resumes a finished retrieval.
                env = {**os.environ, "DRIMBOX_RETRIEVE__WORK_DIR": scratch}
                subprocess.run([drimbox, "fetch", "--config", site_b["config"], "--ins", ins, "--study", study,
                                "--token", site_b_token], check=True, capture_output=True, env=env)
                rates.append(size / 1e6 / (time.perf_counter() - started))
        print(f"    consumer `drimbox fetch` (whole process, look-up included): "
              f"{' '.join(f'{r:.0f}' for r in rates)} MB/s, median {statistics.median(rates):.0f}")


if __name__ == "__main__":
    main()
