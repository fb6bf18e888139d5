"""The on-disk store: LRU eviction by size, restart survival, crash safety of writes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gwtest import Corpus
from pydicom import Dataset

from dicomweb_gateway import FileStore, NotFound, QueryLevel, RetrieveTarget, SearchQuery
from dicomweb_gateway.backend import StoreStatus


def _study_target(uid: str) -> RetrieveTarget:
    return RetrieveTarget(uid)


def _search_studies(fs: FileStore) -> set[str]:
    return {str(ds.StudyInstanceUID) for ds in fs.search(SearchQuery(QueryLevel.STUDY, Dataset()))}


def test_lru_eviction_by_size(tmp_path: Path, corpus: Corpus) -> None:
    """Over the bound, the least recently retrieved instances go first, files included."""
    a, b, c = corpus.mammo, corpus.prior, corpus.ct
    fs = FileStore(tmp_path / "fs", max_bytes=a.total_bytes() + b.total_bytes())
    for study in (a, b):
        for f in study.files:
            fs.add(f)
    time.sleep(0.01)
    list(fs.retrieve(_study_target(a.study_instance_uid)))  # a is now more recent than b
    for f in c.files:
        fs.add(f)
    assert fs.max_bytes is not None and fs.total_bytes <= fs.max_bytes
    assert len(fs.instances(_study_target(a.study_instance_uid))) == len(a.files)
    assert len(fs.instances(_study_target(c.study_instance_uid))) == len(c.files)
    left = fs.instances(_study_target(b.study_instance_uid))
    assert len(left) < len(b.files)
    on_disk = list((tmp_path / "fs" / "objects" / b.study_instance_uid).rglob("*.dcm"))
    assert sorted(on_disk) == sorted(i.path for i in left)


def test_pinned_study_is_not_evicted(tmp_path: Path, corpus: Corpus) -> None:
    """Files of a study being streamed stay until the stream ends."""
    fs = FileStore(tmp_path / "fs", max_bytes=corpus.mammo.total_bytes())
    for f in corpus.mammo.files:
        fs.add(f)
    stream = fs.retrieve(_study_target(corpus.mammo.study_instance_uid))
    first = next(stream)
    for f in corpus.prior.files:
        fs.add(f)
    assert first.path.is_file()
    assert len(list(stream)) == len(corpus.mammo.files) - 1


def test_restart_survival(tmp_path: Path, corpus: Corpus) -> None:
    """Close and reopen: the same studies, searchable and retrievable."""
    fs = FileStore(tmp_path / "fs")
    for f in corpus.ct.files:
        assert fs.store(f).status == StoreStatus.STORED
    fs.close()
    again = FileStore(tmp_path / "fs")
    assert _search_studies(again) == {corpus.ct.study_instance_uid}
    got = list(again.retrieve(_study_target(corpus.ct.study_instance_uid)))
    assert sorted(i.path.read_bytes() for i in got) == sorted(f.read_bytes() for f in corpus.ct.files)


def test_store_rejects_garbage(tmp_path: Path) -> None:
    """A non-DICOM file fails with Cannot Understand and leaves nothing behind."""
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 500)
    fs = FileStore(tmp_path / "fs")
    assert fs.store(junk).status == StoreStatus.FAILED
    assert len(fs) == 0
    assert list((tmp_path / "fs" / "tmp").iterdir()) == []


_WRITER = """
import sys
from pathlib import Path
from dicomweb_gateway import FileStore
FileStore(Path(sys.argv[1])).add(Path(sys.argv[2]))
"""


def test_killed_writer_leaves_nothing_servable(tmp_path: Path, corpus: Corpus) -> None:
    """A writer killed mid-copy (SIGKILL) leaves no servable file; the next open cleans up."""
    root = tmp_path / "fs"
    FileStore(root).close()
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    data = corpus.mammo.files[0].read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root), str(fifo)])
    try:
        with fifo.open("wb") as pipe:
            pipe.write(data[: len(data) // 2])
            pipe.flush()
            deadline = time.monotonic() + 10
            while not any(p.stat().st_size for p in (root / "tmp").iterdir()):
                assert time.monotonic() < deadline, "the writer never started copying"
                time.sleep(0.01)
            proc.kill()
            proc.wait(10)
    except BrokenPipeError:
        pass
    assert list((root / "tmp").iterdir())  # the half-written temp file is there...
    fs = FileStore(root)
    assert list((root / "tmp").iterdir()) == []  # ...and removed on open
    assert len(fs) == 0
    assert not list((root / "objects").rglob("*.dcm"))
    with pytest.raises(NotFound):
        list(fs.retrieve(_study_target(corpus.mammo.study_instance_uid)))


def test_unindexed_object_removed_on_open(tmp_path: Path, corpus: Corpus) -> None:
    """A file renamed into place whose index row never committed (crash between the two) is removed."""
    root = tmp_path / "fs"
    FileStore(root).close()
    stray = root / "objects" / "1.2.3" / "4.5.6" / "7.8.9.dcm"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(corpus.ct.files[0].read_bytes())
    FileStore(root)
    assert not stray.exists()


def test_vanished_file_drops_its_row(tmp_path: Path, corpus: Corpus) -> None:
    """An indexed file deleted behind the store's back is forgotten on open."""
    fs = FileStore(tmp_path / "fs")
    stored = fs.add(corpus.ct.files[0])
    fs.close()
    stored.file.path.unlink()
    assert len(FileStore(tmp_path / "fs")) == 0
