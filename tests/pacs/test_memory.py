"""Memory stays bounded whatever the retrieval size: data goes to disk as it arrives (slow, not in CI)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread

from drimbox.config import LocalAE
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port
from drimbox.testdata import make_patient, write_large_instance, write_mammography_study

log = logging.getLogger(__name__)

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Corpus:
    """Studies loaded into Orthanc for the memory test."""

    studies: tuple[str, ...]
    instances: int
    total: int
    largest: int


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory, orthanc_a: OrthancProcess) -> Corpus:
    """Orthanc holding one ~520 MiB multi-frame instance and full-size 4-view MG studies: > 2 GiB in all."""
    root = tmp_path_factory.mktemp("big")
    large = write_large_instance(root / "large", make_patient(900), target_bytes=520 * MIB)
    orthanc_a.reset()
    orthanc_a.upload([large])
    studies = [str(dcmread(large, stop_before_pixels=True).StudyInstanceUID)]
    total = large.stat().st_size
    seed = instances = 0
    while total < 2 * GIB + 64 * MIB:
        seed += 1
        study = write_mammography_study(root / f"mg{seed}", make_patient(900 + seed), size="full", seed=seed)
        orthanc_a.upload(study.files)
        studies.append(study.study_instance_uid)
        total += study.total_bytes()
        instances += len(study.files)
    return Corpus(tuple(studies), instances + 1, total, large.stat().st_size)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["get", "move"])
def test_peak_memory_is_bounded(
    orthanc_a: OrthancProcess,
    big_corpus: Corpus,
    tmp_path: Path,
    method: str,
    record_property: Callable[[str, object], None],
) -> None:
    """Peak RSS of a process retrieving > 2 GiB (one instance > 500 MiB) stays near its idle level."""
    probe = LocalAE(aet="MEMPROBE", host="127.0.0.2", port=free_port("127.0.0.2"))
    orthanc_a.add_modality("memprobe", probe.aet, probe.host, probe.port)
    remote = orthanc_a.remote_ae(timeout_s=120)
    config = tmp_path / "probe.json"
    config.write_text(
        json.dumps(
            {
                "local": probe.model_dump(),
                "remote": remote.model_dump(include={"aet", "host", "port", "timeout_s"}),
                "studies": big_corpus.studies,
                "method": method,
                "dest": str(tmp_path / "dest"),
            }
        )
    )

    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("memory_probe.py")), str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-20000:]
    report = json.loads(result.stdout)

    # Received files differ from the sources by a few file meta bytes (implementation UID/version).
    assert report["instances"] == big_corpus.instances
    assert report["bytes"] >= 2 * GIB
    assert report["largest"] >= 500 * MIB
    growth = report["peak"] - report["idle"]
    summary = (
        f"{method}: {report['bytes'] / MIB:.0f} MiB in {report['seconds']:.1f} s "
        f"({report['bytes'] / MIB / report['seconds']:.0f} MiB/s); VmHWM idle {report['idle'] / MIB:.0f} MiB, "
        f"peak {report['peak'] / MIB:.0f} MiB (+{growth / MIB:.1f} MiB)"
    )
    log.info(summary)
    record_property("memory", summary)
    assert report["peak"] <= report["idle"] + 2 * big_corpus.largest + 64 * MIB
    assert growth < 64 * MIB  # in fact no instance is ever held in memory, not even the largest
