"""C-GET and C-MOVE retrievals from real PACSes: content, streaming, concurrency, cancellation."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

from drimbox.config import DimseSettings, LocalAE
from drimbox.errors import RetrieveIncomplete
from drimbox.pacs import MoveMediator, NodeScp, PacsClient, RetrievedInstance
from drimbox.testdata import GeneratedStudy

from .peers import Pacs

METHODS = ("get", "move")


def _retrieve(client: PacsClient, method: str) -> Callable[..., Generator[RetrievedInstance, None, None]]:
    return client.get if method == "get" else client.move


def _pixel_data(path: Path) -> tuple[str, bytes]:
    ds = dcmread(path)
    return str(ds.SOPInstanceUID), bytes(ds.PixelData)


def _leftover_temp_files(sop_instance_uids: set[str]) -> list[Path]:
    """pynetdicom's receive files (``tmp*.dcm`` in the temporary directory) of these instances.

    The directory is shared with other processes, so only files of our instances count.
    """
    leftovers = []
    for path in Path(tempfile.gettempdir()).glob("tmp*.dcm"):
        try:
            uid = read_file_meta_info(path).get("MediaStorageSOPInstanceUID")
        except (OSError, InvalidDicomError):
            continue  # gone meanwhile, or not a DICOM file
        if uid in sop_instance_uids:
            leftovers.append(path)
    return leftovers


def _retrieval_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("drimbox-cget", "drimbox-cmove"))]


@pytest.mark.parametrize("method", METHODS)
def test_whole_study_arrives_identical(
    client: PacsClient, pacs: Pacs, mg_study: GeneratedStudy, tmp_path: Path, method: str
) -> None:
    pacs.load(mg_study.files)

    received = list(_retrieve(client, method)(mg_study.study_instance_uid, dest=tmp_path))

    assert sorted(r.sop_instance_uid for r in received) == sorted(mg_study.sop_instance_uids())
    sources = dict(_pixel_data(p) for p in mg_study.files)
    for instance in received:
        assert instance.path == (
            tmp_path / instance.study_instance_uid / instance.series_instance_uid / f"{instance.sop_instance_uid}.dcm"
        )
        assert instance.size == instance.path.stat().st_size
        uid, pixels = _pixel_data(instance.path)
        assert uid == instance.sop_instance_uid
        assert pixels == sources[uid]
        assert instance.sop_class_uid == dcmread(instance.path, stop_before_pixels=True).SOPClassUID
    assert not list(tmp_path.rglob("*.tmp"))
    assert not _leftover_temp_files(set(mg_study.sop_instance_uids()))  # all moved into place


@pytest.mark.parametrize("method", METHODS)
def test_instances_are_yielded_while_the_retrieval_runs(
    node_ae: LocalAE,
    pacs: Pacs,
    dimse_settings: DimseSettings,
    mediator: MoveMediator,
    node_scp: NodeScp,
    mg_study: GeneratedStudy,
    tmp_path: Path,
    method: str,
) -> None:
    """With a one-instance buffer, a caller holding the first instance holds the PACS back:
    at most three of the four files can exist (one yielded, one buffered, one blocked)."""
    pacs.load(mg_study.files)
    with PacsClient(node_ae, pacs.remote, dimse_settings, mediator=mediator, queue_size=1) as client:
        instances = _retrieve(client, method)(mg_study.study_instance_uid, dest=tmp_path)
        first = next(instances)
        assert first.path.exists()
        time.sleep(0.5)  # ample time for the PACS to send everything, were it not held back
        on_disk = list(tmp_path.rglob("*.dcm"))
        assert 1 <= len(on_disk) <= 3 < len(mg_study.files)
        rest = list(instances)
    assert len(rest) == len(mg_study.files) - 1


@pytest.mark.parametrize("method", METHODS)
def test_one_series_and_some_instances(
    client: PacsClient, pacs: Pacs, ct_study: GeneratedStudy, tmp_path: Path, method: str
) -> None:
    pacs.load(ct_study.files)
    retrieve = _retrieve(client, method)
    walk = client.walk_study(ct_study.study_instance_uid)
    series = walk.series[1]

    got = {
        r.sop_instance_uid
        for r in retrieve(
            ct_study.study_instance_uid, series_uid=series.series_instance_uid, dest=tmp_path / "series", walk=walk
        )
    }
    assert got == {i.sop_instance_uid for i in series.instances}

    # Two instances of different series: one IMAGE-level request per series.
    picked = {walk.series[0].instances[0].sop_instance_uid, series.instances[-1].sop_instance_uid}
    got = {
        r.sop_instance_uid
        for r in retrieve(ct_study.study_instance_uid, sop_instance_uids=picked, dest=tmp_path / "some", walk=walk)
    }
    assert got == picked


@pytest.mark.parametrize("method", METHODS)
def test_missing_instance_raises_after_yielding_the_others(
    client: PacsClient, pacs: Pacs, ct_study: GeneratedStudy, tmp_path: Path, method: str
) -> None:
    pacs.load(ct_study.files)
    series_uid = ct_study.series_uids()[0]
    present = ct_study.instances[0].sop_instance_uid
    absent = "1.2.826.0.1.3680043.8.498.1"
    got: list[str] = []
    with pytest.raises(RetrieveIncomplete) as excinfo:
        for instance in _retrieve(client, method)(
            ct_study.study_instance_uid, series_uid=series_uid, sop_instance_uids=[present, absent], dest=tmp_path
        ):
            got.append(instance.sop_instance_uid)
    assert got == [present]
    assert excinfo.value.missing == (absent,)


def test_two_concurrent_moves_land_with_their_request(
    client: PacsClient,
    pacs: Pacs,
    mg_study: GeneratedStudy,
    mg_prior: GeneratedStudy,
    ct_study: GeneratedStudy,
    tmp_path: Path,
) -> None:
    studies = (mg_study, mg_prior, ct_study)
    pacs.load([f for s in studies for f in s.files])
    walks = {s.study_instance_uid: client.walk_study(s.study_instance_uid) for s in studies}
    results: dict[str, list[RetrievedInstance]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(studies))

    def move(study: GeneratedStudy) -> None:
        try:
            start.wait()
            uid = study.study_instance_uid
            results[uid] = list(client.move(uid, dest=tmp_path / uid, walk=walks[uid]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(s,)) for s in studies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for study in studies:
        uid = study.study_instance_uid
        assert sorted(r.sop_instance_uid for r in results[uid]) == sorted(study.sop_instance_uids())
        assert all(r.study_instance_uid == uid and r.path.is_relative_to(tmp_path / uid) for r in results[uid])


@pytest.mark.parametrize("method", METHODS)
def test_closing_the_generator_cancels_and_leaks_nothing(
    node_ae: LocalAE,
    pacs: Pacs,
    dimse_settings: DimseSettings,
    mediator: MoveMediator,
    node_scp: NodeScp,
    ct_study: GeneratedStudy,
    tmp_path: Path,
    method: str,
) -> None:
    pacs.load(ct_study.files)
    with PacsClient(node_ae, pacs.remote, dimse_settings, mediator=mediator, queue_size=1) as client:
        instances = _retrieve(client, method)(ct_study.study_instance_uid, dest=tmp_path)
        next(instances)
        started = time.monotonic()
        instances.close()
        assert time.monotonic() - started < 5
        assert not _retrieval_threads()
        assert mediator.pending == 0
        client.echo()  # pooled associations still fine
        again = list(_retrieve(client, method)(ct_study.study_instance_uid, dest=tmp_path / "again"))
    assert len(again) == len(ct_study.files)
