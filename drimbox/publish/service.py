"""The node's publication side assembled from its settings: outbox, XDS.b client, pipeline, worker.

:class:`PublicationService` is what :class:`~drimbox.node.Node` holds: its :meth:`accept` is the
MLLP listener's ``accept``; :meth:`start` runs the worker when publishing is possible (registry
endpoints and an organisation certificate configured), else the outbox only queues and says why.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import structlog

from drimbox.config import CodeSetting, NodeSettings, PublishSettings
from drimbox.errors import ConfigError
from drimbox.ops.request_id import request_id_hooks
from drimbox.publish.crash import CrashPlan, CrashPoint
from drimbox.publish.jobs import Job
from drimbox.publish.outbox import Backoff, Outbox
from drimbox.publish.pipeline import KosFactory, PacsSource, Publisher
from drimbox.publish.submission import SubmissionPolicy
from drimbox.publish.vihf import VihfIssuer, VihfProfile
from drimbox.publish.worker import OutboxWorker
from drimbox.publish.xds.client import XdsClient, XdsEndpoints
from drimbox.publish.xds.rim import Code
from drimbox.publish.xds.signing import Signer
from drimbox.reports import ImagingReport

__all__ = ["PublicationService", "http_client", "open_outbox", "outbox_path", "signer_of", "xds_endpoints"]

log = structlog.get_logger(__name__)


def outbox_path(settings: NodeSettings) -> Path:
    """The outbox file of a node."""
    return settings.publish.outbox_path or settings.storage.data_dir / "outbox.sqlite3"


def open_outbox(settings: NodeSettings, *, crash: CrashPlan | None = None) -> Outbox:
    """The node's outbox with its retry policy."""
    publish = settings.publish
    return Outbox(outbox_path(settings), crash=crash,
                  backoff=Backoff(publish.retry_base_s, publish.retry_max_s, publish.max_attempts))


def xds_endpoints(settings: NodeSettings) -> XdsEndpoints | None:
    """Registry and repository URLs (explicit, or under ``registry.base_url``); ``None`` if unknown."""
    base = (settings.registry.base_url or "").rstrip("/")
    registry = settings.publish.registry_url or (f"{base}/xds/registry" if base else None)
    repository = settings.publish.repository_url or (f"{base}/xds/repository" if base else None)
    if registry is None or repository is None:
        return None
    return XdsEndpoints(registry=registry, repository=repository)


def signer_of(settings: NodeSettings) -> Signer | None:
    """The organisation certificate and key (``publish.signing_*``, else ``tls.*``)."""
    cert = settings.publish.signing_cert_file or settings.tls.cert_file
    key = settings.publish.signing_key_file or settings.tls.key_file
    if cert is None or key is None:
        return None
    return Signer.from_files(cert, key)


def http_client(settings: NodeSettings) -> httpx.Client:
    """HTTP for XDS.b: the node's CA and client certificate when the registry is HTTPS (mutual TLS)."""
    verify: ssl.SSLContext | bool = True
    if settings.tls.ca_file is not None:
        context = ssl.create_default_context(cafile=str(settings.tls.ca_file))
        if settings.tls.cert_file is not None and settings.tls.key_file is not None:
            context.load_cert_chain(str(settings.tls.cert_file), str(settings.tls.key_file))
        verify = context
    # The request id of the request (or job) being handled goes along (node → registry).
    return httpx.Client(timeout=settings.publish.timeout_s, verify=verify, event_hooks=request_id_hooks())


def vihf_profile(settings: NodeSettings, organisation_id: str) -> VihfProfile:
    """The VIHF attributes of the structure and the software."""
    publish: PublishSettings = settings.publish
    sector: CodeSetting = publish.activity_sector
    return VihfProfile(structure_id=organisation_id, activity_sector=Code(sector.code, sector.scheme, sector.display),
                       lps_id=publish.lps_id, lps_name=publish.lps_name, lps_version=publish.lps_version,
                       lps_homologation_id=publish.lps_homologation_id)


class PublicationService:
    """Outbox + worker of one node.

    Parameters
    ----------
    settings:
        The node's settings (``[publish]``, ``[registry]``, ``[tls]``).
    pacs:
        The site's PACS (for the hierarchical walk).
    kos_factory:
        The KOS builder; without one the worker does not run (reports are still queued).
    on_done:
        Called with each job that ran to its end (the node's publication latency metric).
    """

    def __init__(self, settings: NodeSettings, pacs: PacsSource, kos_factory: KosFactory | None, *,
                 on_done: Callable[[Job], None] | None = None) -> None:
        publish = settings.publish
        self.settings = settings
        self.crash = CrashPlan(CrashPoint(publish.crash_point) if publish.crash_point else None, publish.crash_after)
        self.outbox = open_outbox(settings, crash=self.crash)
        self.worker: OutboxWorker | None = None
        self._http: httpx.Client | None = None
        why = self._missing(kos_factory)
        if why:
            self.disabled_reason: str | None = why
            return
        self.disabled_reason = None
        endpoints = xds_endpoints(settings)
        signer = signer_of(settings)
        assert endpoints is not None and signer is not None and kos_factory is not None
        self._http = http_client(settings)
        policy = SubmissionPolicy.from_settings(publish, settings.name)
        organisation_id = publish.organisation_id or (policy.organisation.id_nat_struct if policy.organisation else "")
        publisher = Publisher(
            outbox=self.outbox, pacs=pacs, xds=XdsClient(endpoints, self._http), kos_factory=kos_factory,
            policy=policy, signer=signer, vihf=VihfIssuer(vihf_profile(settings, organisation_id), signer),
            profession=policy.author_role, specialty=policy.author_specialty,
            refresh_after_s=publish.refresh_after_s, crash=self.crash,
        )
        self.worker = OutboxWorker(self.outbox, publisher, threads=publish.workers, lease_s=publish.lease_s,
                                   poll_s=publish.poll_s, on_done=on_done)

    def _missing(self, kos_factory: KosFactory | None) -> str | None:
        if not self.settings.publish.enabled:
            return "publish.enabled is false"
        if xds_endpoints(self.settings) is None:
            return "no registry: set registry.base_url (or publish.registry_url and publish.repository_url)"
        try:
            if signer_of(self.settings) is None:
                return "no organisation certificate: set publish.signing_cert_file/key_file (or tls.*)"
        except ConfigError as exc:
            return str(exc)
        if kos_factory is None:
            return "no KOS builder available"
        return None

    def accept(self, report: ImagingReport) -> None:
        """The MLLP listener's ``accept``: returns once the job is committed (then the listener ACKs)."""
        self.outbox.enqueue(report)

    def start(self) -> None:
        """Start the worker (if publishing is possible)."""
        if self.worker is None:
            log.warning("publication: reports are queued but not published", reason=self.disabled_reason,
                        outbox=str(self.outbox.path))
            return
        self.worker.start()
        log.info("publication worker started", outbox=str(self.outbox.path), threads=self.settings.publish.workers)

    def stop(self) -> None:
        """Stop the worker (jobs in progress settle or stay reclaimable), close the outbox."""
        if self.worker is not None:
            self.worker.stop()
        if self._http is not None:
            self._http.close()
        self.outbox.close()
