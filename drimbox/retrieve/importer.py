"""Import retrieved instances into the site's PACS (F8), done only once the PACS commits to them.

Why this shape: the retrieved files belong to the source site's conventions, so each is first
rewritten with the patient identity the local PACS expects (:mod:`drimbox.retrieve.identity`, after
every header has been checked to name the one right patient); then it is sent — C-STORE through the
node's :class:`~drimbox.pacs.scu.PacsClient` (default) or STOW-RS to ``retrieve.import_stow_url`` —
in batches, so a study never needs twice its size on disk; then the PACS is asked for Storage
Commitment (:mod:`drimbox.pacs.commitment`) for everything it stored. Only instances the PACS
commits to count as imported; a PACS that stays silent past ``retrieve.commitment_timeout_s``
leaves them *uncommitted* (the import is not done), one that reports failures makes the import fail.

The commitment report reaches the node's SCP: pass the :class:`CommitmentRegistry` the node's
:class:`~drimbox.pacs.scp.NodeScp` serves (``services=[registry]``). Without one (the command line),
the importer listens on the node's DIMSE address itself while it waits.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import structlog
from pydicom.filereader import read_file_meta_info

from drimbox.config import NodeSettings
from drimbox.errors import ConfigError, ImportFailed, PacsError
from drimbox.pacs.commitment import CommitmentListener, CommitmentRegistry, CommitmentResult, request_commitment
from drimbox.pacs.connect import Connector
from drimbox.pacs.scu import PacsClient
from drimbox.retrieve.identity import IdentityPlan, plan_identity, read_identities, reconcile_file
from drimbox.retrieve.model import PatientTraits

__all__ = ["ImportProgress", "ImportReport", "StudyImporter"]

log = structlog.get_logger(__name__)

_BATCH = 64
"""Files rewritten, sent and deleted together (bounds the staging disk use and one association's length)."""


class ImportProgress(Protocol):
    """Progress callbacks of an import (called from the importing thread)."""

    def instance_imported(self, sop_instance_uid: str, size: int, ok: bool) -> None: ...

    def commitment_requested(self, count: int) -> None: ...


@dataclass(frozen=True, slots=True)
class ImportReport:
    """The outcome of one import."""

    stored: tuple[str, ...]
    """SOP Instance UIDs the PACS accepted (C-STORE or STOW success/warning)."""
    failed: tuple[str, ...]
    """SOP Instance UIDs (or file names when unreadable) the PACS refused; see ``problems``."""
    committed: tuple[str, ...]
    """Stored instances the PACS committed to keep (Storage Commitment report)."""
    uncommitted: tuple[str, ...]
    """Stored instances with no commitment (no report within the timeout, or no request possible)."""
    seconds: float
    bytes: int
    transaction_uid: str | None = None
    changed: tuple[str, ...] = ()
    """Identity attributes the reconciliation changed (union over the files)."""
    problems: tuple[str, ...] = field(default=())

    @property
    def done(self) -> bool:
        """Every instance stored and committed: the only state an import may be reported done in."""
        return bool(self.committed) and not (self.failed or self.uncommitted)


@dataclass
class _Tally:
    stored: dict[str, str] = field(default_factory=dict)
    """SOP Instance UID → SOP Class UID."""
    failed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    bytes: int = 0
    changed: set[str] = field(default_factory=set)


class StudyImporter:
    """Imports files into the site's PACS with identity reconciliation and storage commitment.

    Parameters
    ----------
    settings:
        ``[retrieve]`` (rule, issuer, path, STOW URL, commitment timeout, work_dir), the node's AE and
        its PACS.
    pacs:
        The node's PACS client (C-STORE); one is made from ``settings`` when absent.
    commitments:
        The registry the node's SCP routes N-EVENT-REPORTs to; ``None``: listen while waiting.
    http:
        Client for STOW-RS (``import_via = "stow"``); a plain one is made when absent.
    batch:
        Files per batch.
    """

    def __init__(self, settings: NodeSettings, pacs: PacsClient | None = None, *,
                 commitments: CommitmentRegistry | None = None, http: httpx.Client | None = None,
                 batch: int = _BATCH) -> None:
        self.settings = settings
        self._own_pacs = pacs is None
        self.pacs = pacs if pacs is not None else PacsClient(settings.local, settings.pacs, settings.dimse)
        self.commitments = commitments
        self._http = http
        self._batch = max(1, batch)
        retrieve = settings.retrieve
        if retrieve.import_via == "stow" and not retrieve.import_stow_url:
            raise ConfigError("retrieve.import_via = \"stow\" needs retrieve.import_stow_url",
                              key="retrieve.import_stow_url")
        self._connector = Connector(settings.local, settings.pacs, settings.dimse)

    @property
    def staging_dir(self) -> Path:
        """Where reconciled copies wait for their batch to be sent."""
        base = self.settings.retrieve.work_dir or self.settings.storage.data_dir / "retrieved"
        return base / ".import"

    def close(self) -> None:
        if self._own_pacs:
            self.pacs.close()
        self._connector.shutdown()

    # -- the import --------------------------------------------------------------------------------

    def import_study(self, files: Sequence[Path], traits: PatientTraits | None,
                     progress: ImportProgress | None = None, *, source: str = "") -> ImportReport:
        """Reconcile, send and have committed ``files`` (Part 10, one patient).

        ``source`` names where the instances came from (SourceOfPreviousValues, e.g. the source site).

        Raises
        ------
        ImportFailed
            The identity check refused the files (nothing sent), or the PACS reported that it did
            not commit some of them (listed in ``failed``).
        PacsError
            The PACS cannot be reached.
        """
        started = time.monotonic()
        files = [Path(f) for f in files]
        plan = plan_identity(read_identities(files), traits, rule=self.settings.retrieve.identity_rule,
                             local_issuer=self.settings.retrieve.local_issuer)
        tally = _Tally()
        staging = self.staging_dir / uuid.uuid4().hex
        staging.mkdir(parents=True, exist_ok=True)
        try:
            for start in range(0, len(files), self._batch):
                self._import_batch(files[start:start + self._batch], plan, staging, source, tally, progress)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("import sent", stored=len(tally.stored), failed=len(tally.failed), rule=plan.rule,
                 patient_id=plan.patient_id)
        committed: tuple[str, ...] = ()
        uncommitted: tuple[str, ...] = tuple(tally.stored)
        transaction = None
        if tally.stored:
            if progress is not None:
                progress.commitment_requested(len(tally.stored))
            result, problem = self._commit(tally.stored)
            if problem:
                tally.problems.append(problem)
            if result is not None:
                transaction = result.transaction_uid
                if result.failed:
                    raise ImportFailed(
                        f"the PACS did not commit {len(result.failed)} of {len(tally.stored)} instance(s): "
                        + "; ".join(f"{uid} ({why})" for uid, why in result.failed[:10])
                        + ("…" if len(result.failed) > 10 else ""),
                        failed=tuple(uid for uid, _ in result.failed))
                confirmed = set(result.committed)
                committed = tuple(uid for uid in tally.stored if uid in confirmed)
                uncommitted = tuple(uid for uid in tally.stored if uid not in confirmed)
                if uncommitted:
                    tally.problems.append(f"{len(uncommitted)} stored instance(s) not named in the commitment report")
            elif not problem:
                tally.problems.append(f"no storage commitment report within "
                                      f"{self.settings.retrieve.commitment_timeout_s:g} s: import not confirmed")
        return ImportReport(
            stored=tuple(tally.stored), failed=tuple(tally.failed), committed=committed, uncommitted=uncommitted,
            seconds=time.monotonic() - started, bytes=tally.bytes, transaction_uid=transaction,
            changed=tuple(sorted(tally.changed)), problems=tuple(tally.problems),
        )

    def _import_batch(self, files: Sequence[Path], plan: IdentityPlan, staging: Path, source: str, tally: _Tally,
                      progress: ImportProgress | None) -> None:
        staged: list[Path] = []
        for path in files:
            target = staging / f"{len(staged):04d}-{path.name}"
            tally.changed.update(reconcile_file(path, target, plan, modifying_system=self._modifying_system,
                                                source_of_previous_values=source))
            staged.append(target)
        sizes = {p: p.stat().st_size for p in staged}
        try:
            if self.settings.retrieve.import_via == "stow":
                outcomes = self._stow(staged)
            else:
                outcomes = self._store(staged)
        finally:
            for p in staged:
                p.unlink(missing_ok=True)
        for path, (sop, sop_class, problem) in outcomes.items():
            ok = problem is None
            if ok:
                tally.stored[sop] = sop_class
                tally.bytes += sizes[path]
            else:
                tally.failed.append(sop)
                tally.problems.append(f"{sop}: {problem}")
            if progress is not None:
                progress.instance_imported(sop, sizes[path], ok)

    @property
    def _modifying_system(self) -> str:
        return f"DRIMBOX {self.settings.name} ({self.settings.local.aet})"

    # -- C-STORE -----------------------------------------------------------------------------------

    def _store(self, staged: list[Path]) -> dict[Path, tuple[str, str, str | None]]:
        metas = {p: read_file_meta_info(p) for p in staged}
        report = self.pacs.store(staged)
        ok = set(report.stored) | {uid for uid, _ in report.warnings}
        refused = {f.sop_instance_uid: f.reason for f in report.failed if f.sop_instance_uid}
        refused_paths = {f.path: f.reason for f in report.failed}
        outcomes: dict[Path, tuple[str, str, str | None]] = {}
        for path, meta in metas.items():
            sop, sop_class = str(meta.MediaStorageSOPInstanceUID), str(meta.MediaStorageSOPClassUID)
            if sop in ok and sop not in refused:
                outcomes[path] = (sop, sop_class, None)
            else:
                outcomes[path] = (sop, sop_class, refused.get(sop) or refused_paths.get(path) or "not stored")
        return outcomes

    # -- STOW-RS -----------------------------------------------------------------------------------

    def _stow(self, staged: list[Path]) -> dict[Path, tuple[str, str, str | None]]:
        url = self.settings.retrieve.import_stow_url
        assert url is not None
        boundary = f"drimbox-{uuid.uuid4().hex}"
        metas = {p: read_file_meta_info(p) for p in staged}

        def body() -> Iterator[bytes]:
            for path in staged:
                yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")
                with path.open("rb") as stream:
                    while chunk := stream.read(1 << 20):
                        yield chunk
                yield b"\r\n"
            yield f"--{boundary}--\r\n".encode("ascii")

        client = self._http or httpx.Client(timeout=httpx.Timeout(self.settings.retrieve.timeout_s))
        try:
            response = client.post(url, content=body(), headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json"})
        except httpx.HTTPError as exc:
            raise PacsError(f"STOW-RS to {url} failed: {exc}") from exc
        finally:
            if self._http is None:
                client.close()
        answer = _stow_answer(response)
        outcomes: dict[Path, tuple[str, str, str | None]] = {}
        for path, meta in metas.items():
            sop, sop_class = str(meta.MediaStorageSOPInstanceUID), str(meta.MediaStorageSOPClassUID)
            if sop in answer.failed:
                outcomes[path] = (sop, sop_class, answer.failed[sop])
            elif sop in answer.stored:
                outcomes[path] = (sop, sop_class, None)
            else:
                outcomes[path] = (sop, sop_class, f"not in the STOW-RS response (HTTP {response.status_code})")
        return outcomes

    # -- commitment --------------------------------------------------------------------------------

    def _commit(self, stored: dict[str, str]) -> tuple[CommitmentResult | None, str | None]:
        references = [(sop_class, sop) for sop, sop_class in stored.items()]
        timeout = self.settings.retrieve.commitment_timeout_s
        message_ids = self.pacs.mediator.message_ids if self.pacs.mediator is not None else None
        if self.commitments is not None:
            return request_commitment(self._connector, self.commitments, references, timeout_s=timeout,
                                      message_ids=message_ids)
        registry = CommitmentRegistry()
        try:
            listener = CommitmentListener(self.settings.local, self.settings.dimse, registry)
            with listener:
                return request_commitment(self._connector, registry, references, timeout_s=timeout,
                                          message_ids=message_ids)
        except OSError as exc:
            return None, (f"cannot listen on {self.settings.local.host}:{self.settings.local.port} for the "
                          f"storage commitment report ({exc}); is the node running? import through the node")


@dataclass(frozen=True, slots=True)
class _StowAnswer:
    stored: frozenset[str]
    failed: dict[str, str]


def _stow_answer(response: httpx.Response) -> _StowAnswer:
    """The STOW-RS response body (PS3.18 10.5.3): ReferencedSOPSequence / FailedSOPSequence."""
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    if isinstance(body, list):
        body = body[0] if body else {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code >= 400 and not body:
        raise PacsError(f"STOW-RS refused: HTTP {response.status_code} {response.text[:200]}")

    def items(tag: str) -> list[dict[str, object]]:
        value = body.get(tag, {})
        found = value.get("Value", []) if isinstance(value, dict) else []
        return [i for i in found if isinstance(i, dict)]

    def first(item: dict[str, object], tag: str) -> str:
        value = item.get(tag, {})
        values = value.get("Value", []) if isinstance(value, dict) else []
        return str(values[0]) if values else ""

    stored = frozenset(first(i, "00081155") for i in items("00081199"))
    failed = {first(i, "00081155"): f"refused by STOW-RS (failure reason {first(i, '00081197') or '?'})"
              for i in items("00081198")}
    return _StowAnswer(stored, failed)
