"""Types shared by the store tests (fixtures live in conftest.py): the PACS under test, the data."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydicom import Dataset, dcmread

from drimbox.config import RemoteAE
from drimbox.testdata import GeneratedStudy

__all__ = ["Corpus", "Pacs", "read"]

StoreKind = Literal["dimse", "orthanc"]


@dataclass(frozen=True)
class Pacs:
    """A PACS under test and the backend the node uses to reach it.

    Attributes
    ----------
    name
        Test id: ``dimse-orthanc``, ``orthanc`` (REST fast path) or ``dimse-dcmqrscp``.
    kind
        The backend (``dicomweb.backend``).
    remote
        The node's ``[pacs]`` settings for it.
    load, reset, count
        Fill it, empty it (it then no longer has the studies), count its instances.
    compressed
        Whether it can hold and serve compressed files (dcmqrscp has no codecs).
    full_answers
        Whether its IMAGE-level C-FIND/QIDO answers carry SOP Class UID, Rows, Columns
        (dcmqrscp's do not: its index does not keep them).
    """

    name: str
    kind: StoreKind
    remote: RemoteAE
    load: Callable[[Iterable[Path]], object]
    reset: Callable[[], None]
    count: Callable[[], int]
    compressed: bool
    full_answers: bool


@dataclass(frozen=True)
class Corpus:
    """The studies loaded in the PACS for a test."""

    mammo: GeneratedStudy
    ct: GeneratedStudy
    mr: GeneratedStudy | None
    """JPEG-LS lossless MR, only in PACSes that hold compressed files."""

    @property
    def studies(self) -> tuple[GeneratedStudy, ...]:
        """Every loaded study."""
        return (self.mammo, self.ct) if self.mr is None else (self.mammo, self.ct, self.mr)

    def files(self) -> Iterator[Path]:
        """Every loaded file."""
        for study in self.studies:
            yield from study.files

    def by_sop(self) -> dict[str, Path]:
        """Source file of each SOP Instance UID."""
        return {i.sop_instance_uid: i.path for s in self.studies for i in s.instances}


def read(path: Path) -> Dataset:
    """The source file, read by pydicom (the expected values of every test)."""
    return dcmread(path)
