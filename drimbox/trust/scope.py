"""Manifest-scoped access on the source's network face (DESIGN §2b, F7), and its audit.

Two parts, wired together (one without the other is not the scope):

- :func:`kos_scope_dependency` — the ``kos_scope`` dependency of
  :func:`drimbox.stores.routes.network_dicomweb_router`. It requires ``KOS-SOPInstanceUID`` (400
  when missing or not a UID), looks the KOS up among those this node has published and not
  replaced, withdrawn or deprecated (:meth:`Outbox.published_kos`), and admits the request only if
  the resource in the path is within it (403 otherwise). Refusals are audited.
- :class:`ScopedAuditStore` — wraps the network face's store. It serves only the instances the
  admitted KOS references (a study or series retrieve is *filtered* to them) and records each
  instance served once, after its part was handed over.

**The rule.** An instance-level request needs the instance in the KOS (and its series and study to
be the KOS's); a series-level request needs the series in the KOS; a study-level request needs the
study to be the KOS's study. Every request is then served through the filter, so a study or series
retrieve returns exactly the KOS's instances of it — never an instance the KOS does not reference
(e.g. one added to the PACS after publication, or left out of the manifest on purpose). This makes
study-level retrieve, metadata and thumbnails safe without requiring the KOS to cover the whole
study in the PACS, which the source cannot check cheaply.

**Who.** Practitioners (and the explicit, loud dev mode) are admitted. Work without a user is a
node's own token (kind ``node``, bound to the presenting node): admitted for a KOS only with a grant in
force for (that KOS, that node) (:mod:`drimbox.trust.grants`), whose id each served event carries.

**Audit.** ``wado.instance-served`` (the whole instance, ``…/instances`` retrieves), or
``wado.metadata-served`` / ``wado.frames-served`` / ``wado.rendered-served`` /
``wado.bulkdata-served`` / ``wado.thumbnail-served``, one event per instance and request, with the
principal (subject, RPPS, role, node), the client address, the patient (the KOS's PatientID: the
INS), the study/series/SOP and the KOS. For multipart retrieves and metadata, an instance is
recorded when the gateway asks for the *next* one (it paces the backend: the next instance is
requested only once the previous part has left) or when the iteration completes — so an instance
in flight when the node is killed is not counted. For single-instance answers (frames, rendered,
bulk data, thumbnails) the response is built from the instance before it is sent: those are
recorded when the gateway closes the iterator after building it. A whole-instance or metadata
iteration closed early (client gone, error, a single-part answer) records its last instance with
outcome ``failure`` ("not known to be completely sent"): traced, not counted as served. Refusals: ``wado.kos-scope``
with outcome ``refused`` and the reason.

The request's scope reaches the store through a context variable set by the (async) dependency
in the request's task; the gateway calls :meth:`ScopedAuditStore.retrieve` from that task, which
captures it. A retrieve without an admitted scope fails closed (403).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Annotated, Protocol

import pydicom
import structlog
from fastapi import Header, Request
from pydicom import Dataset
from starlette.concurrency import run_in_threadpool

from dicomweb_gateway.backend import DicomStore, FailureReason, InstanceFile, RetrieveTarget, SearchQuery, StoreOutcome
from drimbox.errors import Forbidden, InvalidRequest
from drimbox.trust.audit import AuditEvent, AuditTrail, Outcome
from drimbox.trust.deps import Authenticated
from drimbox.trust.grants import Grant
from drimbox.trust.principal import Principal

__all__ = [
    "KOS_HEADER",
    "KosScope",
    "ManifestIndex",
    "PublishedManifests",
    "ScopedAuditStore",
    "kos_scope_dependency",
    "parse_scope",
]

log = structlog.get_logger(__name__)

KOS_HEADER = "KOS-SOPInstanceUID"
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_ADMITTED_KINDS = frozenset({"practitioner", "developer"})


class PublishedManifests(Protocol):
    """Where the KOS this node published are (the publication outbox)."""

    def published_kos(self, kos_uid: str) -> bytes | None:
        """The KOS bytes while it is published and current, else ``None``."""
        ...


@dataclass(frozen=True, slots=True)
class KosScope:
    """What one KOS references: its study, and each series' instances."""

    kos_uid: str
    study_uids: frozenset[str]
    series: dict[str, frozenset[str]]
    """Series Instance UID → SOP Instance UIDs."""
    patient_id: str | None

    def admits(self, study: str | None, series: str | None, instance: str | None) -> bool:
        """Whether a request for this resource path is within the KOS (see the module docstring)."""
        if study is None or study not in self.study_uids:
            return False
        if series is not None and series not in self.series:
            return False
        return instance is None or (series is not None and instance in self.series[series])

    def covers(self, instance: InstanceFile) -> bool:
        """Whether ``instance`` is one the KOS references."""
        return (instance.study_uid in self.study_uids
                and instance.sop_instance_uid in self.series.get(instance.series_uid, frozenset()))


def parse_scope(kos_uid: str, data: bytes) -> KosScope:
    """The scope of a KOS from its Part 10 bytes."""
    ds: Dataset = pydicom.dcmread(BytesIO(data), force=True)
    studies: set[str] = set()
    series: dict[str, set[str]] = {}
    for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        studies.add(str(study.StudyInstanceUID))
        for item in study.get("ReferencedSeriesSequence", []):
            members = series.setdefault(str(item.SeriesInstanceUID), set())
            members.update(str(sop.ReferencedSOPInstanceUID) for sop in item.get("ReferencedSOPSequence", []))
    return KosScope(kos_uid=kos_uid, study_uids=frozenset(studies),
                    series={k: frozenset(v) for k, v in series.items()},
                    patient_id=str(ds.get("PatientID", "")) or None)


class ManifestIndex:
    """Parsed scopes of published KOS, in a small LRU with a short lifetime.

    The lifetime (``ttl_s``) bounds how long a KOS replaced or withdrawn after it was cached may
    still be honoured; unknown KOS are not cached (a KOS published a moment ago is found at once).
    """

    def __init__(self, manifests: PublishedManifests, *, size: int = 256, ttl_s: float = 10.0) -> None:
        self.manifests = manifests
        self.size = size
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, KosScope]] = OrderedDict()

    def scope(self, kos_uid: str) -> KosScope | None:
        """The scope of ``kos_uid`` if this node publishes it (current), else ``None``."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(kos_uid)
            if hit is not None and now - hit[0] <= self.ttl_s:
                self._cache.move_to_end(kos_uid)
                return hit[1]
        data = self.manifests.published_kos(kos_uid)
        if data is None:
            with self._lock:
                self._cache.pop(kos_uid, None)
            return None
        scope = parse_scope(kos_uid, data)
        with self._lock:
            self._cache[kos_uid] = (now, scope)
            self._cache.move_to_end(kos_uid)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return scope


@dataclass(frozen=True, slots=True)
class _Admitted:
    """The scope admitted for the current request, for the store wrapper."""

    scope: KosScope
    principal: Principal
    source: str | None
    kind: str
    grant: str
    """``grant <id>`` when a node's own token was admitted by a KOS grant, else empty."""


_CURRENT: ContextVar[_Admitted | None] = ContextVar("drimbox_kos_scope", default=None)


def _kind(path: str) -> str:
    """What the request serves of each instance (the audit action's middle word)."""
    for marker, kind in (("/frames/", "frames"), ("/rendered", "rendered"), ("/thumbnail", "thumbnail"),
                         ("/bulkdata/", "bulkdata"), ("/metadata", "metadata")):
        if marker in path:
            return kind
    return "instance"


class GrantLookup(Protocol):
    """The source's KOS grants (:class:`drimbox.trust.grants.KosGrants`)."""

    def find(self, kos_uid: str, node: str) -> Grant | None: ...


def kos_scope_dependency(index: ManifestIndex, audit: AuditTrail,
                         grants: GrantLookup | None = None) -> Callable[..., Awaitable[None]]:
    """The network face's ``kos_scope`` dependency (see the module docstring); ``grants`` admits node tokens."""

    async def kos_scope(
        request: Request,
        principal: Authenticated,
        kos_uid: Annotated[str | None, Header(alias=KOS_HEADER, description=(
            "SOP Instance UID of the KOS (published by this node) whose instances are asked for."))] = None,
    ) -> None:
        params = request.path_params
        study, series, instance = params.get("study"), params.get("series"), params.get("instance")
        source = request.client.host if request.client else None

        def refuse(reason: str, *, kos: str | None = None) -> None:
            audit.record(AuditEvent.by(principal, "wado.kos-scope", "refused", kos_uid=kos, study_uid=study,
                                       series_uid=series, sop_instance_uids=(instance,) if instance else (),
                                       source=source, detail=f"{request.url.path}: {reason}"))

        if kos_uid is None or not kos_uid.strip():
            await run_in_threadpool(refuse, f"no {KOS_HEADER} header")
            raise InvalidRequest(f"the {KOS_HEADER} header is required on the network face (DESIGN §2b)")
        kos_uid = kos_uid.strip()
        if len(kos_uid) > 64 or not _UID.match(kos_uid):
            await run_in_threadpool(refuse, f"malformed {KOS_HEADER}")
            raise InvalidRequest(f"{KOS_HEADER} is not a UID")
        grant: Grant | None = None
        if principal.kind == "node" and grants is not None and principal.node:
            grant = await run_in_threadpool(grants.find, kos_uid, principal.node)
        if principal.kind not in _ADMITTED_KINDS and grant is None:
            await run_in_threadpool(refuse, f"principal kind {principal.kind} (no KOS grant)", kos=kos_uid)
            raise Forbidden(f"a {principal.kind} token is not admitted without a KOS grant")
        scope = await run_in_threadpool(index.scope, kos_uid)
        if scope is None:
            await run_in_threadpool(refuse, "KOS not published (or no longer current) by this node", kos=kos_uid)
            raise Forbidden(f"KOS {kos_uid} is not a current manifest published by this node")
        if not scope.admits(study, series, instance):
            await run_in_threadpool(refuse, "resource not referenced by the KOS", kos=kos_uid)
            raise Forbidden(f"the requested resource is not referenced by KOS {kos_uid}")
        _CURRENT.set(_Admitted(scope, principal, source, _kind(request.url.path),
                               f"grant {grant.id}" if grant is not None else ""))

    return kos_scope


class ScopedAuditStore:
    """The network face's store: serves only the admitted KOS's instances and audits each one served.

    Parameters
    ----------
    inner
        The node's store (the caching PACS bridge).
    audit
        Where ``wado.*-served`` events go (``<data_dir>/audit.sqlite``).
    on_served
        Called with the kind (``instance``, ``metadata``, …) and the file size of each instance
        recorded as served (the node's metrics count exactly what the audit records).
    """

    def __init__(self, inner: DicomStore, audit: AuditTrail,
                 on_served: Callable[[str, int], None] | None = None) -> None:
        self.inner = inner
        self.audit = audit
        self.on_served = on_served

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        """No search on the network face (no QIDO, DESIGN §2b)."""
        raise Forbidden("no search on the network face")

    def store(self, path: Path) -> StoreOutcome:
        """No store on the network face (no STOW)."""
        return StoreOutcome.failed(FailureReason.PROCESSING_FAILURE, "no STOW on the network face")

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        """The target's instances that the admitted KOS references (fails closed without one)."""
        admitted = _CURRENT.get()  # read now, in the request's task
        if admitted is None:
            raise Forbidden("network-face retrieve without an admitted KOS scope")
        return self._served(self.inner.retrieve(target), admitted)

    def _served(self, upstream: Iterator[InstanceFile], admitted: _Admitted) -> Iterator[InstanceFile]:
        pending: InstanceFile | None = None
        completed = False
        try:
            for instance in upstream:
                if not admitted.scope.covers(instance):
                    continue
                if pending is not None:
                    self._record(admitted, pending)  # the gateway asked for the next: the previous has left
                pending = instance
                yield instance
            completed = True
        finally:
            close = getattr(upstream, "close", None)
            if close is not None:
                close()
            if pending is not None:
                if completed or admitted.kind not in ("instance", "metadata"):
                    self._record(admitted, pending)
                else:  # closed early: the part may not have left entirely (client gone, error, single-part)
                    self._record(admitted, pending, outcome="failure", detail="not known to be completely sent")

    def _record(self, admitted: _Admitted, instance: InstanceFile, *, outcome: Outcome = "success",
                detail: str = "") -> None:
        self.audit.record(AuditEvent.by(
            admitted.principal, f"wado.{admitted.kind}-served", outcome,
            detail="; ".join(d for d in (admitted.grant, detail) if d),
            kos_uid=admitted.scope.kos_uid,
            patient_ins=admitted.scope.patient_id, study_uid=instance.study_uid, series_uid=instance.series_uid,
            sop_instance_uids=(instance.sop_instance_uid,), source=admitted.source,
        ))
        if outcome == "success" and self.on_served is not None:
            self.on_served(admitted.kind, instance.size)
