"""The gateway's fast path to an Orthanc PACS, through its REST API (``pacs.rest_url``).

- search: the DICOMweb plugin's QIDO-RS, values written literally (see
  :mod:`drimbox.stores.orthanc_query`), pages of ``page_size`` fetched as the gateway reads on;
- retrieve: ``POST /tools/find`` lists the target's instances (one request; one more for the series
  UIDs of a study), then each file is downloaded as stored (``GET /instances/{id}/file``) into the
  spool, ``parallel`` downloads ahead of the consumer, so the next file arrives while the gateway
  sends the previous one; each is yielded in study order as soon as it is complete, and deleted
  when the consumer asks for the next;
- store: ``POST /instances`` with the file streamed from disk.

Control requests use a pooled httpx client; file downloads use :class:`~drimbox.stores.fetch.FileFetcher`
(several times faster for bulk bytes, see there).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydicom import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

from dicomweb_gateway import (
    BackendError,
    BackendUnavailable,
    FailureReason,
    InstanceFile,
    NotFound,
    RetrieveTarget,
    SearchQuery,
    StoreOutcome,
)
from drimbox.stores.fetch import FetchError, FileFetcher, HttpStatus
from drimbox.stores.orthanc_query import UNIQUE_KEY, QidoPlan, find_body, plan_qido, uid_batches
from drimbox.stores.spool import Spool, discard

__all__ = ["OrthancStore"]

_log = logging.getLogger(__name__)
_RETRIEVE_URL = 0x00081190
_FIRST_PAGE = 100


@dataclass(frozen=True)
class _Item:
    """One instance to download."""

    orthanc_id: str
    series_uid: str
    sop_instance_uid: str
    order: tuple[int, str, int, str]


class OrthancStore:
    """A :class:`dicomweb_gateway.DicomStore` over Orthanc's REST API and DICOMweb plugin.

    Parameters
    ----------
    base_url
        Orthanc's REST root (``http://host:8042``, credentials as ``user:password@`` if any).
    spool
        Where downloaded files wait for the consumer.
    dicomweb_root
        The plugin's root below ``base_url``.
    parallel
        Files downloaded ahead of the consumer, per retrieval.
    page_size
        QIDO results asked per request.
    timeout_s
        Connect/read timeout of every request.
    retry_after_s
        ``Retry-After`` suggested when Orthanc is unavailable.
    """

    def __init__(
        self,
        base_url: str,
        spool: Spool,
        *,
        dicomweb_root: str = "/dicom-web",
        parallel: int = 2,
        page_size: int = 1000,
        timeout_s: float = 30.0,
        retry_after_s: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.spool = spool
        self.parallel = max(1, parallel)
        self.page_size = page_size
        self.retry_after_s = retry_after_s
        self._root = "/" + dicomweb_root.strip("/")
        # trust_env=False: a proxy from the environment must not capture traffic to the site's PACS.
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, trust_env=False,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )  # fmt: skip
        self._fetcher = FileFetcher(self.base_url, timeout_s=timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=4 * self.parallel, thread_name_prefix="orthanc-fetch")

    def __repr__(self) -> str:
        return f"OrthancStore({self.base_url})"

    def close(self) -> None:
        """Release connections and download threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._fetcher.close()
        self._http.close()

    # -- HTTP plumbing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"Orthanc at {self.base_url} is not available ({what}): {exc}",
                                     self.retry_after_s) from exc  # fmt: skip
        except FetchError as exc:
            raise BackendUnavailable(f"Orthanc at {self.base_url} is not available ({what}): {exc}",
                                     self.retry_after_s) from exc  # fmt: skip
        except HttpStatus as exc:
            raise self._status_error(exc.status, str(exc), what) from exc

    def _status_error(self, status: int, detail: str, what: str) -> Exception:
        if status == 404:
            return NotFound(f"Orthanc: {what}: {detail}")
        if status == 503:
            return BackendUnavailable(f"Orthanc is busy ({what}): {detail}", self.retry_after_s)
        return BackendError(f"Orthanc refused {what}: {detail}")

    def _checked(self, response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code >= 400:
            raise self._status_error(response.status_code, " ".join(response.text[:300].split()), what)
        return response

    def _post_json(self, path: str, body: object, what: str) -> Any:
        with self._errors(what):
            return self._checked(self._http.post(path, json=body), what).json()

    # -- search ----------------------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        """QIDO-RS through the plugin, values sent literally; ``/tools/find`` first when they cannot be."""
        plan = plan_qido(query)
        if not plan.needs_find:
            yield from self._paged(plan)
            return
        found = self._post_json("/tools/find", find_body(query), "find")
        key = UNIQUE_KEY[query.level]
        uids = [str(r["MainDicomTags"][key]) for r in found if r.get("MainDicomTags", {}).get(key)]
        for batch in uid_batches(query, uids):
            yield from self._qido(batch, ())

    def _paged(self, plan: QidoPlan) -> Iterator[Dataset]:
        # Orthanc reads every matching instance's file for attributes outside its index (Rows,
        # Columns…), so a first page as large as the gateway's limit costs ~0.25 s on a few
        # hundred instances; most searches stop early (viewers ask for tens): start small.
        offset, size = 0, min(_FIRST_PAGE, self.page_size)
        while True:
            count = 0
            for ds in self._qido(plan, (f"limit={size}", f"offset={offset}")):
                count += 1
                yield ds
            if count < size:
                return
            offset, size = offset + count, self.page_size

    def _qido(self, plan: QidoPlan, extra: tuple[str, ...]) -> Iterator[Dataset]:
        # The query string is assembled by hand: httpx would percent-encode ^ and *, which
        # Orthanc 1.10 does not decode (ORTHANC-NOTES pitfall 2). Every value is URL-safe here.
        url = f"{self._root}{plan.path}?{'&'.join((*plan.params, *extra))}"
        with self._errors("QIDO"):
            response = self._checked(self._http.get(url, headers={"Accept": "application/dicom+json"}), "QIDO")
            items = response.json() if response.content else []
        for item in items:
            ds = Dataset.from_json(item, bulk_data_uri_handler=_no_bulk)
            if _RETRIEVE_URL in ds:
                del ds[_RETRIEVE_URL]  # Orthanc's own URL: the gateway computes the node's
            yield ds

    # -- retrieve --------------------------------------------------------------------------------------

    def _list(self, target: RetrieveTarget) -> list[_Item]:
        query: dict[str, str] = {"StudyInstanceUID": target.study_uid}
        if target.series_uid is not None:
            query["SeriesInstanceUID"] = target.series_uid
        if target.sop_instance_uid is not None:
            query["SOPInstanceUID"] = target.sop_instance_uid
        instances = self._post_json("/tools/find", {"Level": "Instance", "Query": query, "Expand": True}, "list")
        if not instances:
            raise NotFound(f"no such {target.level.value.lower()} in Orthanc")
        series: dict[str, tuple[int, str]] = {}
        if target.series_uid is None:
            for found in self._post_json("/tools/find", {"Level": "Series", "Query": {
                    "StudyInstanceUID": target.study_uid}, "Expand": True}, "list"):  # fmt: skip
                tags = found.get("MainDicomTags", {})
                series[found["ID"]] = (_int(tags.get("SeriesNumber")), str(tags.get("SeriesInstanceUID", "")))
        items = []
        for instance in instances:
            tags = instance.get("MainDicomTags", {})
            number, series_uid = series.get(instance["ParentSeries"], (0, target.series_uid or ""))
            if not series_uid:
                continue  # a series added after the series listing: the next retrieval gets it
            instance_number = _int(tags.get("InstanceNumber") or instance.get("IndexInSeries"))
            sop = str(tags.get("SOPInstanceUID", ""))
            items.append(_Item(instance["ID"], series_uid, sop, (number, series_uid, instance_number, sop)))
        return sorted(items, key=lambda i: i.order)

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        """Download the target's files as stored, ``parallel`` ahead, yielding each in order."""
        with self.spool.job("orthanc") as dest:
            items = self._list(target)
            cancel = threading.Event()
            pending: deque[tuple[_Item, Future[InstanceFile]]] = deque()
            queue = iter(items)

            def submit_next() -> None:
                item = next(queue, None)
                if item is not None:
                    pending.append((item, self._pool.submit(self._download, target, item, dest, cancel)))

            for _ in range(self.parallel):
                submit_next()
            try:
                while pending:
                    item, future = pending.popleft()
                    with self._errors("download"):
                        instance = future.result()
                    submit_next()  # before yielding: the next file downloads while this one is sent
                    try:
                        yield instance
                    finally:
                        discard(instance.path)
            finally:
                cancel.set()
                for _, future in pending:
                    with contextlib.suppress(Exception):
                        discard(future.result().path)

    def _download(self, target: RetrieveTarget, item: _Item, dest: Path, cancel: threading.Event) -> InstanceFile:
        """Download one file and read its File Meta Information (in the download thread: off the
        path of the instance being sent)."""
        path = dest / f"{item.orthanc_id}.dcm"
        try:
            self._fetcher.fetch(f"/instances/{item.orthanc_id}/file", path, cancel)
            return self._instance_file(target, item, path)
        except BaseException:
            discard(path)
            raise

    def _instance_file(self, target: RetrieveTarget, item: _Item, path: Path) -> InstanceFile:
        try:
            meta = read_file_meta_info(path)
        except (OSError, InvalidDicomError) as exc:
            raise BackendError(f"Orthanc sent an unreadable file for {item.sop_instance_uid}: {exc}") from exc
        return InstanceFile(
            path=path,
            study_uid=target.study_uid,
            series_uid=item.series_uid,
            sop_instance_uid=str(meta.get("MediaStorageSOPInstanceUID", item.sop_instance_uid)),
            sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "")),
            transfer_syntax=str(meta.TransferSyntaxUID),
            size=path.stat().st_size,
        )

    # -- store -----------------------------------------------------------------------------------------

    def store(self, path: Path) -> StoreOutcome:
        """``POST /instances`` with the file streamed; duplicates count as stored (idempotent)."""
        with self._errors("store"), path.open("rb") as body:
            response = self._http.post("/instances", content=body, headers={"Content-Type": "application/dicom"})
        if response.status_code == 200:
            return StoreOutcome.stored()
        detail = _orthanc_message(response)
        if response.status_code == 503:
            raise BackendUnavailable(f"Orthanc is busy: {detail}", self.retry_after_s)
        if response.status_code == 400:
            return StoreOutcome.failed(FailureReason.CANNOT_UNDERSTAND, detail)
        if response.status_code == 507:
            return StoreOutcome.failed(FailureReason.OUT_OF_RESOURCES, detail)
        return StoreOutcome.failed(FailureReason.PROCESSING_FAILURE, f"HTTP {response.status_code}: {detail}")


def _orthanc_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text[:300].split())
    if isinstance(body, dict):
        return str(body.get("Details") or body.get("Message") or body)
    return str(body)


def _int(value: object) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0


def _no_bulk(*_args: object) -> bytes:
    return b""
