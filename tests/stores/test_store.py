"""C-STORE / POST /instances behind STOW-RS: round trips, and the Failure Reason of each refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian
from storetest import Pacs, read

from dicomweb_gateway import FailureReason, QueryLevel, RetrieveTarget, SearchQuery, StoreStatus
from drimbox.pacs import StoreFailure
from drimbox.stores import DimseStore, OrthancStore
from drimbox.stores.dimse import failure_reason
from drimbox.testdata import GeneratedStudy

Store = DimseStore | OrthancStore


def test_stored_instances_are_in_the_pacs(store: Store, pacs: Pacs, ct: GeneratedStudy, mr: GeneratedStudy) -> None:
    files = list(ct.files) + (list(mr.files) if pacs.compressed else [])
    for path in files:
        assert store.store(path).status == StoreStatus.STORED
    assert pacs.count() == len(files)
    # Round trip: what the PACS now serves is what was stored.
    sources = {i.sop_instance_uid: i.path for i in ct.instances}
    for instance in store.retrieve(RetrieveTarget(ct.study_instance_uid)):  # each file lives until the next
        assert read(instance.path).PixelData == read(sources.pop(instance.sop_instance_uid)).PixelData
    assert sources == {}
    matching = Dataset()
    matching.StudyInstanceUID = ct.study_instance_uid
    query = SearchQuery(QueryLevel.STUDY, matching, (Tag("StudyInstanceUID"),))
    assert [str(ds.StudyInstanceUID) for ds in store.search(query)] == [ct.study_instance_uid]


def test_storing_twice_is_idempotent(store: Store, pacs: Pacs, ct: GeneratedStudy) -> None:
    for _ in range(2):
        assert store.store(ct.files[0]).status == StoreStatus.STORED
    assert pacs.count() == 1


def test_garbage_cannot_be_understood(store: Store, tmp_path: Path, pacs: Pacs) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"not a data set" * 10)
    outcome = store.store(junk)
    assert (outcome.status, outcome.failure_reason) == (StoreStatus.FAILED, FailureReason.CANNOT_UNDERSTAND)
    assert pacs.count() == 0


def test_strict_archive_refuses_a_compressed_syntax(store: Store, pacs: Pacs, mr: GeneratedStudy) -> None:
    outcome = store.store(mr.files[0])
    if pacs.compressed:
        assert outcome.status == StoreStatus.STORED
    else:  # dcmqrscp accepts no JPEG-LS context: nothing is sent
        assert (outcome.status, outcome.failure_reason) == (
            StoreStatus.FAILED, FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED)  # fmt: skip


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0xA700, FailureReason.OUT_OF_RESOURCES),
        (0xA7FF, FailureReason.OUT_OF_RESOURCES),
        (0xA900, FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
        (0xC000, FailureReason.CANNOT_UNDERSTAND),
        (0xC123, FailureReason.CANNOT_UNDERSTAND),
        (0x0122, FailureReason.SOP_CLASS_NOT_SUPPORTED),
        (0x0111, FailureReason.DUPLICATE_SOP_INSTANCE),
        (0x0110, FailureReason.PROCESSING_FAILURE),
        (0x0124, FailureReason.PROCESSING_FAILURE),  # not authorised: no closer STOW reason
    ],
)
def test_dimse_status_to_failure_reason(status: int, expected: FailureReason, ct: GeneratedStudy) -> None:
    failure = StoreFailure(ct.files[0], "1.2.3", "refused", status)
    assert failure_reason(failure, ct.files[0]) is expected


def test_no_context_blames_the_syntax_or_the_class(ct: GeneratedStudy, mr: GeneratedStudy) -> None:
    assert read(ct.files[0]).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    uncompressed = StoreFailure(ct.files[0], "1.2.3", "no context")
    compressed = StoreFailure(mr.files[0], "1.2.3", "no context")
    assert failure_reason(uncompressed, ct.files[0]) is FailureReason.SOP_CLASS_NOT_SUPPORTED
    assert failure_reason(compressed, mr.files[0]) is FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED
