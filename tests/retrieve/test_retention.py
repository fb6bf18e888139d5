"""Retention of remote images: retrieved studies and DICOMweb-cached remote studies expire after
``retention_s`` and are dropped at once when the registry shows their KOS deprecated; local studies in
the same cache are never touched; an unreachable registry keeps what has not expired."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomweb_gateway.backend import RetrieveTarget
from dicomweb_gateway.backends.filesystem import FileStore
from drimbox.errors import RegistryUnavailable
from drimbox.retrieve.model import Exam
from drimbox.retrieve.retention import INDEX_NAME, RetentionSweeper
from drimbox.testdata import GeneratedStudy, make_patient, write_ct_study

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _exam(kos_uid: str, study_uid: str) -> Exam:
    return Exam(kos_uid=kos_uid, entry_uuid=f"urn:uuid:{kos_uid[-8:]}", repository_unique_id="1.2.3",
                study_uid=study_uid, accession_number=None, performed=None, modalities=("CT",), description="",
                body_part="", source_site="site-a", series=())


def _study(tmp: Path, seed: int) -> GeneratedStudy:
    return write_ct_study(tmp / f"ct{seed}", make_patient(seed), series=1, slices_per_series=2, rows=16, cols=16)


def _retrieved(sweeper: RetentionSweeper, work: Path, kos_uid: str, study: GeneratedStudy) -> Path:
    directory = work / kos_uid
    (directory / "series").mkdir(parents=True)
    for instance in study.instances:
        shutil.copy(instance.path, directory / "series" / f"{instance.sop_instance_uid}.dcm")
    sweeper.record_retrieved(_exam(kos_uid, study.study_instance_uid), directory)
    return directory


def _cached(cache: FileStore, study: GeneratedStudy) -> None:
    for instance in study.instances:
        cache.add(instance.path)


def _in_cache(cache: FileStore, study: GeneratedStudy) -> int:
    return len(cache.instances(RetrieveTarget(study.study_instance_uid)))


@pytest.fixture()
def cache(tmp_path: Path) -> Iterator[FileStore]:
    store = FileStore(tmp_path / "cache")
    yield store
    store.close()


def test_expired_and_deprecated_are_dropped(tmp_path: Path, cache: FileStore) -> None:
    clock, work = Clock(), tmp_path / "retrieved"
    deprecated: set[str] = set()
    asked: list[str] = []

    def is_deprecated(kos_uid: str) -> bool:
        asked.append(kos_uid)
        return kos_uid in deprecated

    dropped: list[str] = []
    sweeper = RetentionSweeper(work, 7 * DAY, is_deprecated, cache=cache, on_dropped=dropped.append, clock=clock)
    old, fresh, withdrawn, local = (_study(tmp_path, s) for s in (31, 32, 33, 34))
    old_dir = _retrieved(sweeper, work, "1.2.9.1", old)
    clock.now += 6 * DAY
    fresh_dir = _retrieved(sweeper, work, "1.2.9.2", fresh)
    withdrawn_dir = _retrieved(sweeper, work, "1.2.9.3", withdrawn)
    for study in (old, fresh, withdrawn, local):
        _cached(cache, study)
    index = json.loads((fresh_dir / INDEX_NAME).read_text())
    assert index == {"kos_uid": "1.2.9.2", "study_uid": fresh.study_instance_uid, "retrieved_at": clock.now}

    report = sweeper.sweep()
    assert report.expired == [] and report.deprecated == [] and report.kept == 3
    clock.now += 1.5 * DAY  # the first one is now 7.5 days old
    deprecated.add("1.2.9.3")
    asked.clear()
    report = sweeper.sweep()
    assert report.expired == ["1.2.9.1"] and report.deprecated == ["1.2.9.3"] and report.kept == 1
    assert not old_dir.exists() and not withdrawn_dir.exists() and fresh_dir.is_dir()
    assert report.freed_bytes >= sum(i.path.stat().st_size for i in old.instances)
    assert set(report.cache_dropped) == {old.study_instance_uid, withdrawn.study_instance_uid}
    assert _in_cache(cache, old) == 0 and _in_cache(cache, withdrawn) == 0
    assert _in_cache(cache, fresh) == 2 and _in_cache(cache, local) == 2  # local studies are never touched
    assert sorted(asked) == ["1.2.9.2", "1.2.9.3"]  # the expired one needs no registry question
    assert set(dropped) == {old.study_instance_uid, withdrawn.study_instance_uid}


def test_viewer_cached_remote_study_expires_and_is_dropped_when_deprecated(tmp_path: Path, cache: FileStore) -> None:
    clock = Clock()
    deprecated: set[str] = set()
    sweeper = RetentionSweeper(tmp_path / "retrieved", DAY, deprecated.__contains__, cache=cache, clock=clock)
    viewed, withdrawn = _study(tmp_path, 35), _study(tmp_path, 36)
    for study, kos in ((viewed, "1.2.9.5"), (withdrawn, "1.2.9.6")):
        _cached(cache, study)
        sweeper.record_remote(_exam(kos, study.study_instance_uid))
    deprecated.add("1.2.9.6")
    report = sweeper.sweep()
    assert report.cache_dropped == [withdrawn.study_instance_uid] and _in_cache(cache, viewed) == 2
    clock.now += 2 * DAY
    sweeper.record_remote(_exam("1.2.9.5", viewed.study_instance_uid))  # seen again: the first time counts
    report = sweeper.sweep()
    assert report.cache_dropped == [viewed.study_instance_uid] and len(cache) == 0
    assert not list((tmp_path / "retrieved" / ".remote").glob("*.json"))


def test_study_in_use_in_the_cache_waits_for_the_next_sweep(tmp_path: Path, cache: FileStore) -> None:
    sweeper = RetentionSweeper(tmp_path / "retrieved", DAY, lambda uid: True, cache=cache)
    study = _study(tmp_path, 37)
    _cached(cache, study)
    sweeper.record_remote(_exam("1.2.9.7", study.study_instance_uid))
    with cache.pinned(study.study_instance_uid):
        report = sweeper.sweep()
        assert report.cache_dropped == [] and "in use" in report.errors[0]
    assert sweeper.sweep().cache_dropped == [study.study_instance_uid]


def test_registry_down_keeps_what_has_not_expired(tmp_path: Path) -> None:
    clock, work = Clock(), tmp_path / "retrieved"

    def unreachable(kos_uid: str) -> bool:
        raise RegistryUnavailable("registry down")

    sweeper = RetentionSweeper(work, DAY, unreachable, clock=clock)
    kept = _retrieved(sweeper, work, "1.2.9.8", _study(tmp_path, 38))
    report = sweeper.sweep()
    assert kept.is_dir() and report.kept == 1 and "registry down" in report.errors[0]
    clock.now += 2 * DAY
    report = sweeper.sweep()
    assert report.expired == ["1.2.9.8"] and not kept.exists()


def test_directory_without_index_gets_one(tmp_path: Path) -> None:
    work = tmp_path / "retrieved"
    (work / "1.2.9.9").mkdir(parents=True)
    sweeper = RetentionSweeper(work, DAY, lambda uid: False)
    assert sweeper.sweep().kept == 1
    assert json.loads((work / "1.2.9.9" / INDEX_NAME).read_text())["kos_uid"] == "1.2.9.9"


def test_background_thread_sweeps_and_stops(tmp_path: Path) -> None:
    work = tmp_path / "retrieved"
    (work / "1.2.9.10").mkdir(parents=True)
    sweeper = RetentionSweeper(work, DAY, lambda uid: True)
    sweeper.start(interval_s=0.05)
    try:
        for _ in range(100):
            if not (work / "1.2.9.10").exists():
                break
            time.sleep(0.02)
    finally:
        sweeper.stop()
    assert not (work / "1.2.9.10").exists()
