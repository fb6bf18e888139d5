"""ITI-18 FindDocuments latency with a million document entries in PostgreSQL, and ITI-41 throughput.

Starts a throwaway PostgreSQL 15 (durable settings: fsync on), bulk-loads ``2 × patients ×
submissions`` entries with ``COPY`` (:mod:`registry_load`), starts the registry as its own process
(``drimbox registry serve``) and measures from outside, over HTTP with ``httpx``:

- FindDocuments by patient (``$XDSDocumentEntryPatientId`` + Approved, LeafClass) for ``--queries``
  random patients, one at a time: p50/p95;
- FindDocuments by Study Instance UID (``$XDSDocumentEntryReferenceIdList``), the RPLC/ITI-57 lookup;
- ITI-41 Provide and Register of ``--publish`` new KOS submissions (VIHF and DSG signed beforehand,
  verified by the registry), ``--concurrency`` clients in parallel: submissions/s.

Run: ``python -u bench/registry_find.py [--patients 100000] [--submissions 5]``. Not a test: it prints.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from registry_load import TESTS, LoadPlan, bulk_load, capture_templates, patient_ins
from sqlalchemy import text

from registry.devdb import ThrowawayPostgres
from registry.store.db import Database

sys.path[:0] = [str(TESTS)]
from xdsfactory import (  # type: ignore[import-not-found]  # noqa: E402
    Built,
    Submission,
    TestPki,
    find_documents,
    parse_reply,
    patient_id,
    provide_and_register,
)

SERVER_SETTINGS = {
    "shared_buffers": "1GB",
    "maintenance_work_mem": "1GB",
    "work_mem": "32MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "effective_cache_size": "8GB",
}


def _percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"p50 {statistics.median(ms):6.2f} ms   p95 {p95:6.2f} ms   max {ms[-1]:7.2f} ms   (n={len(ms)})"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(workdir: Path, url: str, pki: TestPki) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    drimbox = Path(sys.executable).with_name("drimbox")
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen(
        [
            str(drimbox),
            "registry",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "registry"),
            "--database-url",
            url,
            "--trusted-ca-file",
            str(pki.ca_file),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the registry did not start; see {workdir / 'registry.log'}")


def _post(client: httpx.Client, url: str, built: Built) -> tuple[float, object]:
    started = time.perf_counter()
    response = client.post(url, content=built.body, headers={"Content-Type": built.content_type})
    elapsed = time.perf_counter() - started
    return elapsed, parse_reply(response.status_code, response.headers.get("content-type", ""), response.content)


def _measure_queries(client: httpx.Client, base: str, label: str, requests: list[tuple[Built, int]]) -> None:
    timings, wrong = [], 0
    for built, expected in requests:
        elapsed, reply = _post(client, f"{base}/xds/registry", built)
        timings.append(elapsed)
        if len(reply.objects) != expected or not reply.status.endswith("Success"):  # type: ignore[attr-defined]
            wrong += 1
    print(f"  {label:44s} {_percentiles(timings)}   unexpected answers: {wrong}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--submissions", type=int, default=5, help="submissions (KOS + signature) per patient")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--publish", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    plan = LoadPlan(args.patients, args.submissions)
    workdir = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    postgres = ThrowawayPostgres(durable=True, settings=SERVER_SETTINGS).start()
    server: subprocess.Popen[bytes] | None = None
    try:
        url = postgres.create_database("registry_bench")
        database = Database.from_url(url)
        print(
            f"PostgreSQL 15 on 127.0.0.1:{postgres.port}; loading {plan.entries:,} document entries "
            f"({plan.patients:,} patients × {plan.submissions} submissions × 2 entries)"
        )
        started = time.perf_counter()
        bulk_load(
            database.engine,
            f"host=127.0.0.1 port={postgres.port} user=postgres dbname=registry_bench",
            plan,
            capture_templates(),
        )
        load_s = time.perf_counter() - started
        with database.engine.connect() as connection:
            entries = connection.execute(text("SELECT count(*) FROM document_entries")).scalar_one()
            size = connection.execute(text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar_one()
        print(f"loaded {entries:,} entries in {load_s:.0f} s ({entries / load_s:,.0f} entries/s); database {size}")
        database.dispose()

        pki = TestPki.create(workdir)
        server, base = _start_server(workdir, url, pki)
        rng = random.Random(42)
        by_patient = []
        by_study = []
        for _ in range(args.queries):
            p = rng.randrange(plan.patients)
            pid = patient_id(patient_ins(p))
            by_patient.append((find_documents(pid, pki), 2 * plan.submissions))
            serial = p * plan.submissions + rng.randrange(plan.submissions)
            study = [
                (
                    "$XDSDocumentEntryReferenceIdList",
                    [f"('1.2.250.1.999.4.{serial}^^^^urn:ihe:iti:xds:2016:studyInstanceUID')"],
                )
            ]
            by_study.append((find_documents(pid, pki, extra=study), 2))
        with httpx.Client(timeout=30) as client:
            _measure_queries(client, base, "warm-up", by_patient[:20])
            print("ITI-18 FindDocuments over HTTP (VIHF verified on each call), one client:")
            _measure_queries(client, base, "by patient (10 entries, LeafClass)", by_patient)
            _measure_queries(client, base, "by Study UID ($XDSDocumentEntryReferenceIdList)", by_study)
        print(f"ITI-41 Provide and Register: signing {args.publish} submissions (client side, not timed)…")
        submissions = [provide_and_register(Submission(), pki) for _ in range(args.publish)]
        for concurrency in sorted({1, args.concurrency}):
            batch = (
                [provide_and_register(Submission(), pki) for _ in range(args.publish)]
                if concurrency > 1
                else (submissions)
            )
            with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
                post: Callable[[Built], tuple[float, object]] = lambda b: _post(client, f"{base}/xds/repository", b)  # noqa: E731
                started = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    results = list(pool.map(post, batch))
                wall = time.perf_counter() - started
            failures = sum(1 for _, reply in results if not reply.status.endswith("Success"))  # type: ignore[attr-defined]
            print(
                f"  {concurrency} client(s): {len(batch) / wall:6.1f} submissions/s   "
                f"{_percentiles([t for t, _ in results])}   failures: {failures}"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
