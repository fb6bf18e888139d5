"""Prefetch into the node cache: background jobs, and ``drimbox prefetch`` (real CLI process)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import tomli_w
from storetest import Corpus, Pacs

from dicomweb_gateway import CachingStore, FileStore, RetrieveTarget
from drimbox.config import LocalAE, load_settings
from drimbox.stores import DimseStore, OrthancStore, PrefetchJob, PrefetchJobs, build_dicomweb


def _wait(job: PrefetchJob) -> PrefetchJob:
    deadline = time.monotonic() + 60
    while job.state in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return job


def test_jobs_fill_the_cache_and_report_per_study(
    store: DimseStore | OrthancStore, corpus: Corpus, pacs: Pacs, tmp_path: Path
) -> None:
    cache = FileStore(tmp_path / "cache")
    jobs = PrefetchJobs(CachingStore(cache, store))
    try:
        job = jobs.submit([corpus.mammo.study_instance_uid, corpus.ct.study_instance_uid, "1.2.3.4.5"])
        assert jobs.get(job.id) is job
        _wait(job)
        mammo, ct, unknown = job.studies
        assert (mammo.state, mammo.instances, mammo.from_cache) == ("done", 4, False)
        if pacs.kind == "orthanc":  # the stored files themselves (C-GET re-encodes the file meta)
            assert mammo.bytes == sum(f.stat().st_size for f in corpus.mammo.files)
        assert (ct.state, ct.instances) == ("done", 6)
        assert unknown.state == "failed" and "NotFound" in (unknown.error or "")
        assert job.state == "failed"
        assert cache.completeness(RetrieveTarget(corpus.ct.study_instance_uid)) is not None
        again = _wait(jobs.submit([corpus.ct.study_instance_uid]))
        assert (again.state, again.studies[0].from_cache) == ("done", True)
    finally:
        jobs.close()
        cache.close()


def test_cli_prefetch(pacs: Pacs, corpus: Corpus, tmp_path: Path, scu_ae: LocalAE) -> None:
    config = tmp_path / "node.toml"
    config.write_text(tomli_w.dumps({
        "name": "cli-test",
        "local": {"aet": scu_ae.aet, "host": "127.0.0.1", "port": scu_ae.port},
        "pacs": pacs.remote.model_dump(exclude_none=True),
        "storage": {"data_dir": str(tmp_path / "data")},
        "dicomweb": {"backend": pacs.kind},
    }))  # fmt: skip
    study = corpus.ct.study_instance_uid
    argv = [sys.executable, "-m", "drimbox", "prefetch", "--config", str(config), study]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert "1 of 1 studies in the cache" in first.stdout
    cache = FileStore(tmp_path / "data" / "dicomweb-cache")
    try:
        record = cache.completeness(RetrieveTarget(study))
        assert record is not None and sorted(record[1]) == sorted(corpus.ct.sop_instance_uids())
    finally:
        cache.close()
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0 and "already in the cache" in second.stderr
    failing = subprocess.run([*argv[:-1], "1.2.3.4.5"], capture_output=True, text=True, timeout=120, check=False)
    assert failing.returncode == 1
    assert "0 of 1 studies" in failing.stdout
    bad = subprocess.run([*argv[:-1], "not-a-uid"], capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "not a Study Instance UID" in bad.stderr
    # With the node running on the same cache, the command refuses rather than race it.
    running = build_dicomweb(load_settings(config))
    try:
        busy = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    finally:
        running.close()
    assert busy.returncode == 2 and "POST /api/prefetch" in busy.stderr
