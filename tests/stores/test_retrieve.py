"""Retrieval through each backend: every instance, identical data, streamed, spool left empty."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydicom import dcmread
from storetest import Corpus, Pacs, read

from dicomweb_gateway import InstanceFile, NotFound, RetrieveTarget
from drimbox.config import DimseSettings, LocalAE, StorageSettings
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port
from drimbox.pacs import MoveMediator, NodeScp, PacsClient
from drimbox.stores import DimseStore, OrthancStore, Spool
from drimbox.testdata import GeneratedStudy

Store = DimseStore | OrthancStore


def _spooled(spool: Spool) -> list[Path]:
    return [p for p in spool.root.rglob("*") if p.is_file()]


def _check_identical(instance: InstanceFile, source: Path, pacs: Pacs) -> None:
    got, expected = dcmread(instance.path), read(source)
    assert instance.sop_instance_uid == expected.SOPInstanceUID
    assert instance.sop_class_uid == expected.SOPClassUID
    assert instance.transfer_syntax == expected.file_meta.TransferSyntaxUID
    assert instance.size == instance.path.stat().st_size
    assert got.PixelData == expected.PixelData
    assert got == expected  # every element of the data set
    if pacs.kind == "orthanc":
        assert instance.path.read_bytes() == source.read_bytes()  # the stored file, as is


def test_study_series_and_instance(store: Store, corpus: Corpus, pacs: Pacs, spool: Spool) -> None:
    sources = corpus.by_sop()
    for study in corpus.studies:
        seen = []
        for instance in store.retrieve(RetrieveTarget(study.study_instance_uid)):
            assert instance.study_uid == study.study_instance_uid
            _check_identical(instance, sources[instance.sop_instance_uid], pacs)
            seen.append(instance.sop_instance_uid)
        assert sorted(seen) == sorted(study.sop_instance_uids())
    series_uid = corpus.ct.series_uids()[1]
    series = list(store.retrieve(RetrieveTarget(corpus.ct.study_instance_uid, series_uid)))
    assert {i.series_uid for i in series} == {series_uid}
    assert len(series) == sum(1 for i in corpus.ct.instances if i.series_instance_uid == series_uid)
    one = corpus.mammo.instances[3]
    target = RetrieveTarget(corpus.mammo.study_instance_uid, one.series_instance_uid, one.sop_instance_uid)
    [alone] = list(store.retrieve(target))
    assert alone.sop_instance_uid == one.sop_instance_uid
    assert _spooled(spool) == []


def test_each_spooled_file_goes_once_the_consumer_moves_on(store: Store, corpus: Corpus, spool: Spool) -> None:
    retrieval = store.retrieve(RetrieveTarget(corpus.ct.study_instance_uid))
    first = next(retrieval)
    assert first.path.is_file()
    second = next(retrieval)
    assert not first.path.exists()
    assert second.path.is_file()
    retrieval.close()  # client gone: the rest is cancelled and the spool emptied
    assert not second.path.exists()
    assert _spooled(spool) == []
    # The PACS link is usable again at once (a cancelled C-GET left no stale association).
    assert len(list(store.retrieve(RetrieveTarget(corpus.mammo.study_instance_uid)))) == 4


def test_fast_path_yields_in_series_and_instance_order(
    orthanc_a_clean: OrthancProcess, ct: GeneratedStudy, spool: Spool
) -> None:
    """C-GET order is the PACS's; the fast path sorts by series and instance number itself."""
    orthanc_a_clean.upload(reversed(ct.files))
    store = OrthancStore(orthanc_a_clean.http_url, spool)
    try:
        got = [i.sop_instance_uid for i in store.retrieve(RetrieveTarget(ct.study_instance_uid))]
    finally:
        store.close()
    assert got == list(ct.sop_instance_uids())


@pytest.mark.parametrize("which", ["study", "series", "instance"])
def test_unknown_targets_are_not_found(store: Store, corpus: Corpus, which: str) -> None:
    study, series = corpus.ct.study_instance_uid, corpus.ct.series_uids()[0]
    target = {
        "study": RetrieveTarget("1.2.3.4.5"),
        "series": RetrieveTarget(study, "1.2.3.4.6"),
        "instance": RetrieveTarget(study, series, "1.2.3.4.7"),
    }[which]
    with pytest.raises(NotFound):
        next(iter(store.retrieve(target)))


def test_c_move_when_the_pacs_has_no_c_get(
    orthanc_a_clean: OrthancProcess, mammo: GeneratedStudy, spool: Spool, tmp_path: Path, store_dimse: DimseSettings
) -> None:
    """C-MOVE to the node's own SCP (a destination declared at runtime for this test)."""
    orthanc_a_clean.upload(mammo.files)
    local = LocalAE(aet="DRIMBOX_MV", host="127.0.0.1", port=free_port("127.0.0.1"))
    orthanc_a_clean.add_modality("drimbox-mv", local.aet, local.host, local.port)
    mediator = MoveMediator(quarantine_dir=tmp_path / "quarantine", straggler_timeout_s=2)
    scp = NodeScp(local, store_dimse, StorageSettings(data_dir=tmp_path / "node"), mediator)
    scp.start()
    remote = orthanc_a_clean.remote_ae(timeout_s=10).model_copy(update={"supports_c_get": False})
    client = PacsClient(local, remote, store_dimse, mediator=mediator, fsync=False)
    try:
        got = {
            i.sop_instance_uid: i for i in DimseStore(client, spool).retrieve(RetrieveTarget(mammo.study_instance_uid))
        }
        assert set(got) == set(mammo.sop_instance_uids())
    finally:
        client.close()
        scp.stop()
    assert _spooled(spool) == []


def test_concurrent_retrievals_do_not_mix(store: Store, corpus: Corpus) -> None:
    def sops(uid: str) -> list[str]:
        return sorted(i.sop_instance_uid for i in store.retrieve(RetrieveTarget(uid)))

    studies = [s.study_instance_uid for s in corpus.studies]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(sops, list(itertools.chain(studies, studies))))
    expected = {s.study_instance_uid: sorted(s.sop_instance_uids()) for s in corpus.studies}
    assert results == [expected[uid] for uid in itertools.chain(studies, studies)]


def test_fast_path_survives_keep_alive_connections_closed_by_orthanc(
    orthanc_a_clean: OrthancProcess, ct: GeneratedStudy, spool: Spool
) -> None:
    """Orthanc closes idle keep-alive connections after 1 s: every pooled one is then stale."""
    orthanc_a_clean.upload(ct.files)
    store = OrthancStore(orthanc_a_clean.http_url, spool, parallel=3)
    try:
        for _ in range(2):
            assert len(list(store.retrieve(RetrieveTarget(ct.study_instance_uid)))) == len(ct.files)
            time.sleep(1.5)
    finally:
        store.close()
