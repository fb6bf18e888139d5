"""The worker threads (lock, recovery, settling) and the ``drimbox outbox`` / ``drimbox publish`` commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import drimbox.publish
import drimbox.publish.xds
from drimbox.publish.errors import NotForDmp
from drimbox.publish.jobs import JobState
from drimbox.publish.outbox import JobHandle, Outbox
from drimbox.publish.worker import OutboxLocked, OutboxWorker

from .factories import make_report


@pytest.mark.parametrize("module", [drimbox.publish, drimbox.publish.xds])
def test_public_api_is_sorted_and_importable(module: object) -> None:
    names = list(module.__all__)  # type: ignore[attr-defined]
    # isort style, as ruff keeps it: CONSTANTS, then Classes, then functions
    assert names == sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    assert all(hasattr(module, name) for name in names)


def _wait(outbox: Outbox, state: JobState, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while outbox.counts().get(state, 0) == 0:
        assert time.monotonic() < deadline, outbox.counts()
        time.sleep(0.02)


def test_worker_threads_run_settle_and_hold_the_lock(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    seen: list[int] = []

    def run(handle: JobHandle) -> None:
        seen.append(handle.job.id)
        if handle.job.report and not handle.job.report.visibility.to_dmp:
            raise NotForDmp("DESTDMP=N")
        handle.complete("ok", published=True)

    worker = OutboxWorker(outbox, run, threads=2, poll_s=0.05)
    worker.start()
    try:
        with pytest.raises(OutboxLocked):
            OutboxWorker(Outbox(tmp_path / "outbox.sqlite3"), run).start()  # one worker process per outbox
        outbox.enqueue(make_report())
        _wait(outbox, JobState.DONE)
        from drimbox.reports import Visibility

        outbox.enqueue(make_report(accession="B", visibility=Visibility(to_dmp=False)))
        _wait(outbox, JobState.DEAD_LETTER)
    finally:
        worker.stop()
    assert sorted(seen) == [1, 2]
    OutboxWorker(outbox, run).start()  # the lock is free again after stop
    outbox.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}  # a wide terminal: rich does not shorten the cells
    return subprocess.run([sys.executable, "-m", "drimbox", *args], capture_output=True, text=True, timeout=60, env=env)


def test_outbox_and_publish_commands(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'name = "site-a"\n[pacs]\naet = "PACS"\nhost = "127.0.0.1"\nport = 4242\n'
                      f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    outbox = Outbox(tmp_path / "data" / "outbox.sqlite3")
    job_id = outbox.enqueue(make_report())
    handle = outbox.claim("w", 60)
    assert handle is not None
    handle.fail("registry refused: XDSRegistryMetadataError", permanent=True)
    outbox.close()

    listed = _cli("outbox", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert "dead_letter" in listed.stdout and "ACC0001" in listed.stdout

    again = _cli("outbox", "--config", str(config), "retry", str(job_id))
    assert again.returncode == 0, again.stderr
    assert _cli("outbox", "--config", str(config), "retry", str(job_id)).returncode == 2  # pending now

    manual = _cli("publish", "--config", str(config), "--accession", "ACC0001")
    assert manual.returncode == 0 and "queued job" in manual.stdout, manual.stderr
    unknown = _cli("publish", "--config", str(config), "--study", "1.2.3.4")
    assert unknown.returncode == 2 and "no report received" in unknown.stderr
    both = _cli("publish", "--config", str(config), "--study", "1.2.3", "--accession", "A")
    assert both.returncode == 2

    outbox = Outbox(tmp_path / "data" / "outbox.sqlite3")
    assert [j.kind.value for j in outbox.jobs([JobState.PENDING])] == ["publish", "refresh"]
    outbox.close()
