"""F7 retrieval: fetch an exam's series from their source nodes over WADO-RS, stream them to disk,
and check what arrived against the KOS.

How it behaves, and why:

- **Trust before contact.** Every series' RetrieveURL is checked against the :class:`PeerPolicy`
  *before any request is sent*; one untrusted host makes :meth:`StudyRetriever.retrieve` raise
  :class:`UntrustedPeer` and nothing is contacted at all. A KOS pointing anywhere off the trust
  list is suspect as a whole (altered or forged manifest), and following its other URLs would
  still hand the user's bearer token to hosts on the word of that document.
- **Streaming.** The multipart body is parsed incrementally (:class:`MultipartParser`); each part
  goes to a temp file in the series directory, is fsync'ed, checked, and renamed to
  ``<directory>/<series_uid>/<sop_instance_uid>.dcm``. A file with that name is therefore always a
  complete, verified instance — which is what makes resuming safe. Memory stays at one chunk.
- **Checked against the KOS.** Each part is read with pydicom (``stop_before_pixels``): an
  instance the KOS does not reference is discarded and listed in ``unexpected``; one with another
  study, series or SOP class than the KOS says is discarded and listed in ``mismatched``.
- **Resumable at instance granularity.** Instances already on disk are never fetched again. After
  a network failure mid-series the next attempt asks only for what is missing: the whole series
  again when more than half of it is missing (one request beats many), else each missing instance
  at ``{RetrieveURL}/instances/{sop}``. Attempts per series are ``[retrieve] attempts`` with
  exponential backoff, and the whole retrieval has a time budget (``budget_s``).
- **Caps and counts.** With a :class:`~drimbox.ops.peer_limits.OutboundLimiter`, requests to one
  source host share its concurrency cap with every other retrieval of the node and reads are paced
  to its bandwidth cap; with a :class:`RetrievalMeter` (the node's metrics) each instance kept is
  counted with its bytes, so the counters move by exactly what :class:`RetrievalReport` says.
- **Failures.** 400/401/403 from the source raise :class:`SourceRefused` (not retried: the same
  request would be refused again); connection errors, timeouts, truncated bodies and 5xx are
  retried (so are 429 and 503, a source's per-peer caps) and, once attempts or budget are
  exhausted, raise :class:`SourceUnavailable`. A 404 is
  not retried either; its instances end up in ``missing``. Files already written stay on disk, so
  calling :meth:`retrieve` again resumes.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import pydicom
import structlog
from pydicom.errors import InvalidDicomError

from dicomweb_gateway.errors import MalformedMultipart
from dicomweb_gateway.multipart import MultipartParser, PartData, PartEnd, PartStart
from drimbox.config import NodeSettings
from drimbox.errors import NetworkError, SourceRefused, SourceUnavailable
from drimbox.ops.peer_limits import OutboundLimiter
from drimbox.retrieve.model import Actor, Exam, RetrievalProgress, RetrievalReport, SeriesRef
from drimbox.trust.peers import PeerPolicy, network_client

__all__ = ["ACCEPT_DICOM", "RetrievalMeter", "StudyRetriever", "kos_headers"]

log = structlog.get_logger(__name__)

ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
"""What the consumer accepts: every transfer syntax as stored, so the source never transcodes."""

_REFUSED = frozenset({400, 401, 403})
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PART_SUFFIX = ".part"


def kos_headers(exam: Exam, actor: Actor, accept: str = ACCEPT_DICOM) -> dict[str, str]:
    """Headers of every request to a source node's network face (DESIGN F7, §2b)."""
    return {"Accept": accept, "Authorization": f"Bearer {actor.token}", "KOS-SOPInstanceUID": exam.kos_uid}


class RetrievalMeter(Protocol):
    """What the retriever reports to the node's metrics (:class:`drimbox.metrics.NodeMetrics`)."""

    def instance_retrieved(self, size: int) -> None:
        """One instance of ``size`` bytes received, checked and kept."""
        ...

    def retrieval_finished(self, seconds: float, received_bytes: int) -> None:
        """One call of :meth:`StudyRetriever.retrieve` ended."""
        ...


class _Transient(Exception):
    """A failure worth another attempt (connection lost, timeout, 5xx, truncated body)."""


class _Gone(Exception):
    """The source has no such resource (404): not retried."""


@dataclass
class _SeriesOutcome:
    """What one series' worker found (merged into the report by the caller's thread)."""

    received: dict[str, Path] = field(default_factory=dict)
    bytes: int = 0
    unexpected: set[str] = field(default_factory=set)
    mismatched: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    failure: NetworkError | None = None


class StudyRetriever:
    """Retrieves exams from source nodes (F7); thread-safe, one instance per node.

    Parameters
    ----------
    settings
        ``[retrieve]`` (parallel series, timeout, attempts) and ``[tls]`` (when ``client`` is None).
    policy
        The trust list: URLs elsewhere are never contacted.
    client
        The HTTPS client (mutual TLS); default :func:`network_client` of ``settings``. A client
        passed in is not closed by :meth:`close`.
    budget_s
        Longest time one :meth:`retrieve` may take, retries included; default
        ``timeout_s × attempts × ⌈series / parallel_series⌉``.
    backoff_s
        First wait before a retry (doubled each time, at most 10 s).
    meter
        Counts instances and bytes received (the node's metrics).
    limiter
        Per-source concurrency and bandwidth caps (``[peer_limits]``), shared by the node's retrievals.
    """

    def __init__(self, settings: NodeSettings, policy: PeerPolicy, client: httpx.Client | None = None, *,
                 budget_s: float | None = None, backoff_s: float = 0.5, meter: RetrievalMeter | None = None,
                 limiter: OutboundLimiter | None = None) -> None:
        self.settings = settings
        self.meter = meter
        self.limiter = limiter
        self.policy = policy
        self._own_client = client is None
        self.client = client if client is not None else network_client(settings)
        self.budget_s = budget_s
        self.backoff_s = backoff_s

    def close(self) -> None:
        """Close the HTTPS client if this object created it."""
        if self._own_client:
            self.client.close()

    def retrieve(self, exam: Exam, actor: Actor, directory: Path, *,
                 progress: RetrievalProgress | None = None) -> RetrievalReport:
        """Fetch every series of ``exam`` into ``directory``; see the module docstring.

        Raises
        ------
        UntrustedPeer
            A RetrieveURL's host is not on the trust list (nothing was contacted).
        SourceRefused
            The source answered 400/401/403.
        SourceUnavailable
            The source could not be reached (or kept failing) within the attempts and budget.
        """
        for series in exam.series:  # all checks first: an untrusted URL means no request at all
            self.policy.check_url(series.retrieve_url)
        cfg = self.settings.retrieve
        started = time.monotonic()
        rounds = max(1, math.ceil(len(exam.series) / cfg.parallel_series))
        budget = self.budget_s if self.budget_s is not None else cfg.timeout_s * cfg.attempts * rounds
        deadline = started + budget
        stop = threading.Event()
        directory.mkdir(parents=True, exist_ok=True)
        report = RetrievalReport(exam=exam, directory=directory)
        with ThreadPoolExecutor(max_workers=cfg.parallel_series, thread_name_prefix="retrieve") as pool:
            # Each series in a copy of the caller's context: its logs and requests carry the request id.
            futures = [pool.submit(contextvars.copy_context().run, self._series, exam, actor, s, directory,
                                   deadline, stop, progress) for s in exam.series]
            outcomes = [f.result() for f in futures]
        report.seconds = time.monotonic() - started
        unexpected: set[str] = set()
        mismatched: set[str] = set()
        errors: list[str] = []
        for outcome in outcomes:
            report.received.update(outcome.received)
            report.bytes += outcome.bytes
            unexpected |= outcome.unexpected
            mismatched |= outcome.mismatched
            errors += outcome.errors
        report.missing = tuple(sorted(exam.sop_instance_uids() - report.received.keys()))
        report.unexpected = tuple(sorted(unexpected))
        report.mismatched = tuple(sorted(mismatched))
        report.errors = tuple(errors)
        failures = [o.failure for o in outcomes if o.failure is not None]
        if self.meter is not None:
            self.meter.retrieval_finished(report.seconds, report.bytes)
        log.info("retrieval finished", kos=exam.kos_uid, received=len(report.received), missing=len(report.missing),
                 unexpected=len(unexpected), mismatched=len(mismatched), bytes=report.bytes,
                 seconds=round(report.seconds, 3), failures=len(failures))
        refused = [f for f in failures if isinstance(f, SourceRefused)]
        if refused:
            raise refused[0]
        if failures:
            raise failures[0]
        return report

    # -- one series ---------------------------------------------------------------------------

    def _series(self, exam: Exam, actor: Actor, series: SeriesRef, directory: Path, deadline: float,
                stop: threading.Event, progress: RetrievalProgress | None) -> _SeriesOutcome:
        outcome = _SeriesOutcome()
        if progress is not None:
            progress.series_started(series)
        error: str | None = None
        try:
            self._fetch_series(exam, actor, series, directory / series.series_uid, deadline, stop, outcome, progress)
        except NetworkError as exc:
            outcome.failure = exc
            error = str(exc)
            if isinstance(exc, SourceRefused):
                stop.set()  # the others would be refused too
        except Exception as exc:  # noqa: BLE001 - reported per series; other series go on
            log.exception("series retrieval failed", series=series.series_uid)
            error = f"series {series.series_uid}: {type(exc).__name__}: {exc}"
            outcome.errors.append(error)
        if progress is not None:
            progress.series_finished(series, error)
        return outcome

    def _fetch_series(self, exam: Exam, actor: Actor, series: SeriesRef, target: Path, deadline: float,
                      stop: threading.Event, outcome: _SeriesOutcome, progress: RetrievalProgress | None) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for stale in target.glob(f".*{_PART_SUFFIX}"):  # parts a killed run left behind
            stale.unlink(missing_ok=True)
        expected = {i.sop_instance_uid: i for i in series.instances}
        for sop in expected:
            path = target / f"{sop}.dcm"
            if path.is_file():
                outcome.received[sop] = path
        attempts = self.settings.retrieve.attempts
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            missing = [sop for sop in expected if sop not in outcome.received]
            if not missing or stop.is_set():
                return
            if time.monotonic() >= deadline:
                break
            try:
                if len(missing) * 2 > len(expected):
                    self._get(series.retrieve_url, exam, actor, series, target, deadline, outcome, progress)
                else:
                    for sop in missing:
                        self._get(f"{series.retrieve_url}/instances/{sop}", exam, actor, series, target, deadline,
                                  outcome, progress)
                missing = [sop for sop in expected if sop not in outcome.received]
                if missing:
                    # The source answered in full without these: asking again would not help.
                    outcome.errors.append(f"series {series.series_uid}: the source did not send "
                                          f"{len(missing)} instance(s) the KOS references")
                return
            except _Gone as exc:
                outcome.errors.append(f"series {series.series_uid}: {exc}")
                return
            except _Transient as exc:
                last = exc
                log.warning("series retrieval interrupted", series=series.series_uid, attempt=attempt,
                            error=str(exc), have=len(outcome.received), of=len(expected))
                if attempt < attempts:
                    pause = min(10.0, self.backoff_s * 2 ** (attempt - 1))
                    if time.monotonic() + pause >= deadline:
                        break
                    time.sleep(pause)
        raise SourceUnavailable(f"series {series.series_uid}: source unavailable after {attempts} attempt(s) "
                                f"or the {self.budget_s or 'default'} s budget: {last}")

    def _get(self, url: str, exam: Exam, actor: Actor, series: SeriesRef, target: Path, deadline: float,
             outcome: _SeriesOutcome, progress: RetrievalProgress | None) -> None:
        """One GET, its parts written as they arrive; raises _Transient/_Gone/SourceRefused."""
        remaining = max(1.0, deadline - time.monotonic())
        timeout = httpx.Timeout(min(self.settings.retrieve.timeout_s, remaining), connect=min(10.0, remaining))
        host = urlsplit(url).hostname or ""
        try:
            with self._slot(host), \
                    self.client.stream("GET", url, headers=kos_headers(exam, actor), timeout=timeout) as response:
                if response.status_code in _REFUSED:
                    response.read()
                    raise SourceRefused(f"{url}: the source refused the request ({response.status_code}): "
                                        f"{response.text[:300]}", status=response.status_code)
                if response.status_code == 404:
                    raise _Gone(f"{url}: not found on the source (404)")
                if response.status_code >= 500 or response.status_code == 429:
                    # 429/503: the source's per-peer caps ([peer_limits]); retried after the backoff.
                    raise _Transient(f"{url}: source answered {response.status_code}")
                if response.status_code != 200:
                    response.read()
                    raise SourceRefused(f"{url}: unexpected status {response.status_code}",
                                        status=response.status_code)
                _Writer(exam.study_uid, series, target, outcome, progress, meter=self.meter,
                        pace=self._pacer(host)).consume(response)
        except (httpx.TransportError, MalformedMultipart) as exc:
            raise _Transient(f"{url}: {type(exc).__name__}: {exc}") from exc

    def _slot(self, host: str) -> contextlib.AbstractContextManager[None]:
        return self.limiter.slot(host) if self.limiter is not None else contextlib.nullcontext()

    def _pacer(self, host: str) -> Callable[[int], None] | None:
        limiter = self.limiter
        if limiter is None or not limiter.max_bytes_per_s:
            return None
        return lambda amount: limiter.pace(host, amount)


class _Writer:
    """Writes the parts of one response into a series directory, checking each against the KOS."""

    def __init__(self, study_uid: str, series: SeriesRef, target: Path, outcome: _SeriesOutcome,
                 progress: RetrievalProgress | None, *, meter: RetrievalMeter | None = None,
                 pace: Callable[[int], None] | None = None) -> None:
        self.meter = meter
        self.pace = pace
        self.study_uid = study_uid
        self.series = series
        self.target = target
        self.outcome = outcome
        self.progress = progress
        self.expected = {i.sop_instance_uid: i.sop_class_uid for i in series.instances}
        self.wrote = False

    def consume(self, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "")
        if content_type.lower().startswith("application/dicom"):
            self._single(self._chunks(response))
            return
        match = _BOUNDARY.search(content_type)
        if not content_type.lower().startswith("multipart/related") or match is None:
            raise _Transient(f"unexpected response type {content_type!r}")
        parser = MultipartParser(match.group(1))
        current: _PartFile | None = None
        try:
            # Unbuffered: bytes that arrived before a cut are kept (a parsed part survives the failure).
            for chunk in self._chunks(response):
                for event in parser.feed(chunk):
                    if isinstance(event, PartStart):
                        current = _PartFile(self.target)
                    elif isinstance(event, PartData):
                        assert current is not None
                        current.write(event.data)
                    elif isinstance(event, PartEnd):
                        assert current is not None
                        part, current = current, None
                        self._settle(part)
            parser.close()
        finally:
            if current is not None:
                current.discard()
            if self.wrote:
                _fsync_dir(self.target)

    def _chunks(self, response: httpx.Response) -> Iterator[bytes]:
        for chunk in response.iter_bytes():
            if self.pace is not None:
                self.pace(len(chunk))
            yield chunk

    def _single(self, chunks: Iterator[bytes]) -> None:
        part = _PartFile(self.target)
        try:
            for chunk in chunks:
                part.write(chunk)
        except BaseException:
            part.discard()
            raise
        self._settle(part)
        if self.wrote:
            _fsync_dir(self.target)

    def _settle(self, part: _PartFile) -> None:
        """Check a complete part; keep it as ``<sop>.dcm`` or discard and report it."""
        part.finish()
        try:
            ds = pydicom.dcmread(part.path, stop_before_pixels=True,
                                 specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID",
                                                "SOPInstanceUID"])
            sop = str(ds.get("SOPInstanceUID", ""))
            study, series_uid, sop_class = (str(ds.get(k, "")) for k in
                                            ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"))
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            part.discard()
            self.outcome.errors.append(f"series {self.series.series_uid}: a part is not DICOM ({exc})")
            return
        if sop not in self.expected:
            part.discard()
            self.outcome.unexpected.add(sop or "<no SOPInstanceUID>")
            log.warning("instance not in the KOS discarded", series=self.series.series_uid, sop=sop)
            return
        if series_uid != self.series.series_uid or sop_class != self.expected[sop] or study != self.study_uid:
            part.discard()
            self.outcome.mismatched.add(sop)
            log.warning("instance with other UIDs than the KOS says discarded", sop=sop, study=study,
                        series=series_uid, sop_class=sop_class)
            return
        if sop in self.outcome.received:  # a resend of what is on disk already
            part.discard()
            return
        final = self.target / f"{sop}.dcm"
        os.replace(part.path, final)
        self.wrote = True
        self.outcome.received[sop] = final
        self.outcome.bytes += part.size
        if self.meter is not None:
            self.meter.instance_retrieved(part.size)
        if self.progress is not None:
            self.progress.instance_received(self.series, sop, part.size)


class _PartFile:
    """A part's temp file in the series directory (hidden, ``.part``): never mistaken for an instance."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f".{uuid.uuid4().hex}{_PART_SUFFIX}"
        self._file = self.path.open("wb")
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def finish(self) -> None:
        """Flush and fsync: the rename that follows must publish complete bytes, even after a power cut."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Make the renames in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
