"""C-STORE files to a peer, streamed from disk (PS3.4 Annex B).

With ``STORE_SEND_CHUNKED_DATASET`` pynetdicom sends a file's encoded data set as is, in PDU-sized
chunks: no decoding and flat memory, but the accepted presentation context must match the file's
SOP class *and* transfer syntax exactly. So the file meta of every file is read first (a few
hundred bytes each), the distinct (SOP class, transfer syntax) pairs are proposed as single-syntax
contexts, 128 per association, and each batch of files goes over its own association.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING

from drimbox.errors import NoAcceptableContext
from drimbox.pacs.connect import Connector
from drimbox.pacs.contexts import store_batches
from drimbox.pacs.exchange import Exchange
from drimbox.pacs.mediator import MessageIds
from drimbox.pacs.models import StoreFailure, StoreReport
from drimbox.pacs.responses import Link
from drimbox.pacs.status import Service, category, describe

__all__ = ["FileHeader", "read_headers", "store_files"]


@dataclass(frozen=True)
class FileHeader:
    """What choosing a presentation context for a file needs (from its file meta)."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str

    @property
    def pair(self) -> tuple[str, str]:
        """(SOP class, transfer syntax)."""
        return (self.sop_class_uid, self.transfer_syntax_uid)


def read_headers(paths: Iterable[Path]) -> tuple[list[FileHeader], list[StoreFailure]]:
    """The file meta of each file; files without a usable one are reported as failures."""
    headers: list[FileHeader] = []
    failures: list[StoreFailure] = []
    for path in map(Path, paths):
        try:
            meta = read_file_meta_info(path)
            headers.append(
                FileHeader(
                    path,
                    str(meta.MediaStorageSOPClassUID),
                    str(meta.MediaStorageSOPInstanceUID),
                    str(meta.TransferSyntaxUID),
                )
            )
        except (OSError, InvalidDicomError, AttributeError, EOFError) as exc:
            failures.append(StoreFailure(path, None, f"not a DICOM file with file meta information: {exc}"))
    return headers, failures


@dataclass
class _Tally:
    stored: list[str] = field(default_factory=list)
    warnings: list[tuple[str, int]] = field(default_factory=list)
    failed: list[StoreFailure] = field(default_factory=list)
    sent: int = 0

    def report(self) -> StoreReport:
        return StoreReport(tuple(self.stored), tuple(self.warnings), tuple(self.failed), self.sent)


def _not_accepted(exchange: Exchange, header: FileHeader) -> StoreFailure:
    return StoreFailure(
        header.path,
        header.sop_instance_uid,
        f"{exchange.peer} accepted no presentation context for {header.sop_class_uid} "
        f"in transfer syntax {header.transfer_syntax_uid}",
    )


def _send(link: Link, exchange: Exchange, header: FileHeader, msg_id: int, tally: _Tally) -> None:
    try:
        code = exchange.store(link, header.path, msg_id)
    except ValueError:  # no accepted context for this exact (SOP class, transfer syntax)
        tally.failed.append(_not_accepted(exchange, header))
        return
    tally.sent += header.path.stat().st_size
    kind = category(code)
    if kind == STATUS_SUCCESS:
        tally.stored.append(header.sop_instance_uid)
    elif kind == STATUS_WARNING:
        tally.warnings.append((header.sop_instance_uid, code))
    else:
        tally.failed.append(
            StoreFailure(header.path, header.sop_instance_uid, f"refused: {describe(code, Service.STORE)}", code)
        )


def store_files(
    connector: Connector,
    exchange: Exchange,
    headers: list[FileHeader],
    message_ids: MessageIds,
    failures: Iterable[StoreFailure] = (),
) -> StoreReport:
    """Send every file, one association per batch of at most 128 exact-match contexts."""
    tally = _Tally(failed=list(failures))
    for contexts in store_batches(h.pair for h in headers):
        proposed = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in contexts}
        batch = [h for h in headers if h.pair in proposed]
        link: Link | None = None
        try:
            for header in batch:
                if link is None or not link.reusable:  # first file, or recovered from a lost response
                    if link is not None:
                        link.assoc.abort()
                    try:
                        link = connector.associate(contexts)
                    except NoAcceptableContext:
                        tally.failed.extend(_not_accepted(exchange, h) for h in batch)
                        break
                _send(link, exchange, header, message_ids.next(), tally)
        finally:
            if link is not None and link.assoc.is_established:
                link.assoc.release()
    return tally.report()
