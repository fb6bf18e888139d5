"""One node process: the DIMSE SCP, the site face (HTTP) and the network face (HTTPS, mutual TLS).

:class:`Node` wires the parts from the settings; :func:`run_node` runs them until SIGINT/SIGTERM and
stops them in the reverse order (the SCP stops accepting before the HTTP servers drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import ssl
import time
from collections.abc import Callable, Iterator

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI

from dicomweb_gateway import CachingStore
from drimbox.app import create_network_app, create_site_app
from drimbox.config import NodeSettings
from drimbox.errors import ConfigError
from drimbox.hl7 import MllpListener
from drimbox.metrics import NodeMetrics
from drimbox.ops.dimse import ScpAssociationMeter
from drimbox.ops.peer_limits import OutboundLimiter
from drimbox.ops.wiring import NodeOperations
from drimbox.pacs import MoveMediator, NodeScp, PacsClient
from drimbox.pacs.commitment import CommitmentRegistry
from drimbox.publish.iocm import RejectionWatcher
from drimbox.publish.kos import node_kos_factory
from drimbox.publish.service import PublicationService
from drimbox.retrieve import Actor, Exam
from drimbox.retrieve.dimse_face import DimseFace, default_work_dir
from drimbox.retrieve.directory import RegistryDirectory
from drimbox.retrieve.importer import StudyImporter
from drimbox.retrieve.jobs import ImportJobs
from drimbox.retrieve.retention import RetentionSweeper
from drimbox.retrieve.transfer import StudyRetriever
from drimbox.retrieve.viewing import RemoteNodeStore, RemoteStudies, SiteStore
from drimbox.retrieve.xdm import XdmOrigin
from drimbox.retrieve.xdm_api import xdm_router
from drimbox.screening import screening_for_node
from drimbox.stores import build_dicomweb, network_dicomweb_router, prefetch_router, site_dicomweb_router
from drimbox.trust import TokenVerifier
from drimbox.trust.audit import AuditStore
from drimbox.trust.binding import NetworkBinding
from drimbox.trust.grants import KosGrants, grants_router
from drimbox.trust.login import auth_router
from drimbox.trust.node_credential import DeferredAccess, NodeCredential
from drimbox.trust.oidc import OidcRelyingParty
from drimbox.trust.peers import inbound_peer_check, network_client
from drimbox.trust.scope import ManifestIndex, ScopedAuditStore, kos_scope_dependency
from drimbox.trust.sessions import BrowserSessions, SessionStore
from drimbox.trust.tokens import build_token_verifier
from drimbox.trust.trustlist import TrustListPolicy, TrustListRefresher, peer_policy_from_settings
from drimbox.viewer.dist import ohif_dist
from drimbox.viewer.serve import mount_viewer
from drimbox.web import ContextualCalls, public_router, published_study_lookup, web_router, xdm_exporter

__all__ = ["Node", "build_verifier", "run_node"]

log = structlog.get_logger(__name__)


def build_verifier(settings: NodeSettings) -> TokenVerifier | None:
    """The token verifier, or ``None`` in the explicit (and loudly logged) dev mode."""
    if settings.auth.dev_mode:
        if settings.tls.cert_file is not None:
            raise ConfigError("auth.dev_mode: refused while TLS is configured (tls.cert_file)", key="auth.dev_mode")
        log.warning("DEV MODE: authentication is OFF, every caller is treated as the developer",
                    node=settings.name)
        return None
    return build_token_verifier(settings.auth)


def _directory(settings: NodeSettings) -> RegistryDirectory | None:
    """The registry look-up (F6), when the node has a registry; its own errors name what is missing."""
    if settings.registry.base_url is None and settings.publish.registry_url is None:
        return None
    return RegistryDirectory.from_settings(settings)


def _viewer_mount(settings: NodeSettings) -> Callable[[FastAPI], None] | None:
    """OHIF at the site face's root (F9), when the setup installed it; without it the node still runs."""
    try:
        dist = ohif_dist(settings)
    except ConfigError as exc:
        if settings.viewer.ohif_dist is not None:
            raise
        log.warning("viewer disabled: OHIF is not installed", reason=str(exc))
        return None
    return lambda app: mount_viewer(app, settings, dist=dist)


class _RecordingViewer:
    """Opens a remote study for the viewer and registers it for expiry (retention, deprecation)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def open(self, exam: Exam, actor: Actor, *, patient_id: str | None = None) -> None:
        self._node.remote_studies.open(exam, actor, patient_id=patient_id)
        self._node.retention.record_remote(exam)


class Node:
    """The parts of one node, built from its settings (nothing runs until :meth:`start`)."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        # Issue 10: this node's own metrics registry, given to every part that counts.
        self.metrics = NodeMetrics()
        self.verifier = build_verifier(settings)
        self.mediator = MoveMediator(quarantine_dir=settings.storage.quarantine_dir,
                                     straggler_timeout_s=settings.dimse.move_quarantine_s)
        self.pacs = PacsClient(local=settings.local, remote=settings.pacs, dimse=settings.dimse,
                               mediator=self.mediator, on_association=self.metrics.scu_association)
        label = f"{settings.pacs.aet}@{settings.pacs.host}:{settings.pacs.port}"
        # Hash-chained, with checkpoints signed by the node's key (tls.key_file) kept outside the database.
        self.audit = AuditStore.for_node(settings)
        self.dicomweb = build_dicomweb(settings, mediator=self.mediator)
        self.dicomweb.store.on_lookup = self.metrics.cache_lookup
        # F1/F3: the MLLP listener ACKs a report once the outbox has committed its job.
        self.publication = PublicationService(
            settings, self.pacs, node_kos_factory(settings),
            on_done=lambda job: self.metrics.publication_latency.observe(max(0.0, time.time() - job.created)))
        self.hl7 = MllpListener(settings.hl7, self.publication.accept)
        # F4: IOCM rejection notes C-STOREd by the PACS land in quarantine; they become rejection jobs.
        self.iocm = RejectionWatcher(settings.storage.quarantine_dir, settings.storage.data_dir / "iocm",
                                     self.publication.outbox, poll_s=settings.publish.iocm_poll_s)
        # Consumer side (F7, F9): RetrieveURLs are followed to trust-listed nodes only, over mutual TLS.
        # The signed national trust list when configured ([trust_list]), else the static [peers] hosts.
        self.peer_policy = peer_policy_from_settings(settings)
        self.trust_list_refresher = TrustListRefresher.from_settings(self.peer_policy, settings.trust_list) \
            if isinstance(self.peer_policy, TrustListPolicy) else None
        self.peer_client = network_client(settings) if settings.tls.cert_file is not None else None
        self.remote_studies = RemoteStudies()
        self.retriever = StudyRetriever(settings, self.peer_policy, self.peer_client, meter=self.metrics,
                                        limiter=OutboundLimiter(settings.peer_limits)) \
            if self.peer_client is not None else None
        self.directory = _directory(settings)
        work_dir = default_work_dir(settings.storage.data_dir, settings.retrieve.work_dir)
        # F8: imports are done once the PACS confirms them by Storage Commitment (its N-EVENT-REPORT
        # comes back to the node's SCP, routed to the waiting import by transaction UID).
        self.commitments = CommitmentRegistry()
        self.importer = StudyImporter(settings, self.pacs, commitments=self.commitments)
        self.retention = RetentionSweeper(
            work_dir, settings.retrieve.retention_s,
            lambda kos_uid: self.directory.is_deprecated(kos_uid) if self.directory is not None else False,
            cache=self.dicomweb.cache, on_dropped=self.remote_studies.forget)
        # Browser users (F5, F6, F9): OIDC login; the same client gets the node's own token (client
        # credentials) for work without a user, admitted by sources under a KOS grant (DESIGN §2b).
        self.relying_party = OidcRelyingParty.from_settings(settings, self.verifier) \
            if settings.oidc.issuer and self.verifier is not None else None
        self.node_credential = NodeCredential(self.relying_party, settings.name, scope=settings.auth.audience) \
            if self.relying_party is not None else None
        self.deferred_access = DeferredAccess(self.node_credential, self.peer_client, self.peer_policy) \
            if self.node_credential is not None and self.peer_client is not None else None
        self.import_jobs = ImportJobs(retriever=self.retriever, importer=self.importer, work_dir=work_dir,
                                      audit=self.audit, on_retrieved=self.retention.record_retrieved,
                                      deferral=self.deferred_access) \
            if self.retriever is not None else None
        # DIMSE for the site's workstations: C-FIND/C-MOVE/C-GET of the network's studies (DESIGN §2b).
        self.dimse_face = DimseFace(
            aet=settings.local.aet, workstations=settings.workstations, audit=self.audit, work_dir=work_dir,
            verifier=self.verifier, directory=self.directory, retriever=self.retriever,
            ins_oids=settings.retrieve.ins_oids, timezone=settings.publish.timezone)
        self.scp = NodeScp(local=settings.local, dimse=settings.dimse, storage=settings.storage,
                           mediator=self.mediator,
                           services=[self.dimse_face, self.commitments, ScpAssociationMeter(self.metrics)])
        site_store = self.dicomweb.store
        self.remote_store: RemoteNodeStore | None = None
        if self.peer_client is not None:
            # The viewer's /dicom-web serves opened remote studies from their source, through the same cache.
            remote = RemoteNodeStore(self.remote_studies, self.peer_client, self.peer_policy,
                                     self.dicomweb.spool.root / "remote")
            self.remote_store = remote
            site_store = CachingStore(self.dicomweb.cache,
                                      SiteStore(self.dicomweb.upstream, remote, self.remote_studies),
                                      revalidate_after_s=settings.dicomweb.cache_revalidate_s)
        origin = XdmOrigin.from_settings(settings)
        site_routers: tuple[APIRouter, ...] = (site_dicomweb_router(site_store, self.dicomweb.site_settings),
                        prefetch_router(self.dicomweb.prefetch),
                        xdm_router(origin=origin, work_dir=work_dir, importer=self.importer,
                                   spool_dir=self.dicomweb.spool.root / "xdm", audit=self.audit))
        # Browser users (F5, F6, F9): OIDC login, server-side sessions, the portal pages and the viewer.
        self.sessions = SessionStore.at(settings.storage.data_dir, max_ttl_s=settings.oidc.session_ttl_s)
        browser = BrowserSessions(self.sessions)
        self.calls = ContextualCalls(ttl_s=settings.oidc.session_ttl_s)
        public_routers = [public_router(calls=self.calls, audit=self.audit, settings=settings, sessions=browser)]
        if self.relying_party is not None:
            public_routers.append(auth_router(self.relying_party, self.sessions, public_url=settings.oidc.public_url))
        page_routers = []
        if self.directory is not None and self.import_jobs is not None:
            page_routers.append(web_router(
                directory=self.directory, audit=self.audit, remote=_RecordingViewer(self),
                imports=self.import_jobs,
                xdm=xdm_exporter(work_dir=work_dir, origin=origin, spool_dir=self.dicomweb.spool.root / "xdm",
                                 directory=self.directory),
                published_study=published_study_lookup(self.publication.outbox), settings=settings,
                calls=self.calls, sessions=browser))
        # F7 source side: only the instances of a KOS this node published, each one served audited.
        # A node's own token is admitted for one KOS under a grant (work without a user, DESIGN §2b).
        self.grants = KosGrants.at(settings.storage.data_dir, self.audit)
        manifests = ManifestIndex(self.publication.outbox)
        scope = kos_scope_dependency(manifests, self.audit, self.grants)
        network_store = ScopedAuditStore(self.dicomweb.store, self.audit, on_served=self.metrics.instance_served)
        network_routers: tuple[APIRouter, ...] = (
            network_dicomweb_router(network_store, self.dicomweb.network_settings, kos_scope=scope),
            grants_router(self.grants, lambda kos_uid: manifests.scope(kos_uid) is not None))
        # Screening second reads (a pilot under derogation, [screening] enabled): API, pages, node messages.
        self.screening = screening_for_node(
            settings, audit=self.audit, directory=self.directory, remote_store=self.remote_store,
            remote_studies=self.remote_studies, site_store=site_store if self.remote_store is not None else None,
            client=self.peer_client, policy=self.peer_policy, grants=self.grants,
            node_credential=self.node_credential, published=published_study_lookup(self.publication.outbox))
        if self.screening is not None:
            site_routers = (*site_routers, self.screening.site)
            page_routers.append(self.screening.pages)
            network_routers = (*network_routers, self.screening.network)
        # Issue 10: /readyz (public, both faces), /metrics (site face, authenticated), KPIs, caps, request ids.
        self.ops = NodeOperations(
            settings, self.metrics, pacs=self.pacs, outbox=self.publication.outbox,
            trust_list=self.peer_policy if isinstance(self.peer_policy, TrustListPolicy) else None,
            refresher=self.trust_list_refresher)
        public_routers.append(self.ops.readiness_router)
        self.site_app = create_site_app(node_name=settings.name, verifier=self.verifier, pacs=self.pacs,
                                        pacs_label=label, extra_routers=(*site_routers, self.ops.metrics_router),
                                        public_routers=tuple(public_routers), page_routers=tuple(page_routers),
                                        mount=_viewer_mount(settings))
        self.site_app.state.session_store = self.sessions
        peer_check = inbound_peer_check(self.peer_policy, self.audit) \
            if isinstance(self.peer_policy, TrustListPolicy) else None
        self.network_app = create_network_app(node_name=settings.name, verifier=self.verifier,
                                              extra_routers=network_routers, peer_check=peer_check,
                                              public_routers=(self.ops.readiness_router,))
        # DESIGN §2b: a token is accepted on the network face only from the node its client belongs to.
        binding = NetworkBinding(settings.peers.clients, required=settings.auth.node_bound_tokens)
        if isinstance(self.peer_policy, TrustListPolicy):  # a listed node also goes by its Identifiant
            binding.peer_names = self.peer_policy.names_for_host
        self.network_app.state.principal_binding = binding
        for app in (self.site_app, self.network_app):
            app.state.audit = self.audit  # refused authentications are audited (auth.refused)
        self.ops.instrument(self.site_app, "site")
        self.ops.instrument(self.network_app, "network")

    def start(self) -> None:
        """Start the DIMSE SCP."""
        for directory in (self.settings.storage.incoming_dir, self.settings.storage.quarantine_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if self.trust_list_refresher is not None:
            self.trust_list_refresher.start()  # the last good list (local copy) is in force until a new one verifies
        self.scp.start()
        self.publication.start()  # resumes the jobs a previous run left in flight
        self.iocm.start()
        self.hl7.start()
        self.retention.start(3600.0)
        if self.import_jobs is not None:
            self.import_jobs.resume_interrupted()  # granted jobs go on with the node's credential
        self.ops.start()

    def stop(self) -> None:
        """Stop taking reports and associations, settle publications, release the PACS and DICOMweb backends."""
        self.hl7.stop()
        self.scp.stop()
        self.dimse_face.close()
        if self.trust_list_refresher is not None:
            self.trust_list_refresher.stop()
        if self.import_jobs is not None:
            self.import_jobs.close()
        self.retention.stop()
        self.importer.close()
        self.iocm.stop()
        self.publication.stop()
        self.pacs.close()
        if self.retriever is not None:
            self.retriever.close()
        if self.directory is not None:
            self.directory.close()
        if self.peer_client is not None:
            self.peer_client.close()
        if self.relying_party is not None:
            self.relying_party.close()
        self.sessions.close()
        if self.screening is not None:
            self.screening.service.close()
        self.grants.close()
        self.dicomweb.close()
        self.ops.close()
        self.audit.close()


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`run_node` (two servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _network_server_config(node: Node) -> uvicorn.Config | None:
    tls = node.settings.tls
    if tls.cert_file is None or tls.key_file is None or tls.ca_file is None:
        log.warning("network face disabled: tls.cert_file, tls.key_file and tls.ca_file are required for mutual TLS")
        return None
    return uvicorn.Config(
        node.network_app, host=node.settings.http.network_host, port=node.settings.http.network_port,
        ssl_certfile=str(tls.cert_file), ssl_keyfile=str(tls.key_file), ssl_ca_certs=str(tls.ca_file),
        ssl_cert_reqs=ssl.CERT_REQUIRED, log_config=None, access_log=False, lifespan="off",
        timeout_graceful_shutdown=_grace(node),
    )


def _grace(node: Node) -> int:
    """uvicorn's drain time: requests in progress (retrievals) finish within it or are cut (0: at once)."""
    return math.ceil(node.settings.operations.shutdown_grace_s)


async def _serve(node: Node) -> None:
    http = node.settings.http
    configs = [uvicorn.Config(node.site_app, host=http.host, port=http.port, log_config=None,
                              access_log=False, lifespan="off", timeout_graceful_shutdown=_grace(node))]
    network = _network_server_config(node)
    if network is not None:
        configs.append(network)
    servers = [_Server(c) for c in configs]
    loop = asyncio.get_running_loop()

    def request_exit() -> None:
        if any(server.should_exit for server in servers):
            for server in servers:  # a second signal: stop waiting for requests in progress
                server.force_exit = True
            return
        log.info("stopping: no new associations or reports; requests in progress may finish",
                 node=node.settings.name, grace_s=node.settings.operations.shutdown_grace_s)
        # Graceful shutdown (issue 10): the SCP and the MLLP listener stop accepting first, then the
        # HTTP servers stop accepting and drain (cut after the grace); node.stop() settles the rest.
        intake_stopped.append(loop.run_in_executor(None, _stop_intake, node))  # off the loop: HTTP keeps serving
        for server in servers:
            server.should_exit = True

    intake_stopped: list[asyncio.Future[None]] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_exit)
    await asyncio.gather(*(s.serve() for s in servers))
    await asyncio.gather(*intake_stopped)


def _stop_intake(node: Node) -> None:
    """Stop taking associations and reports (the SCP stops accepting before the process exits)."""
    node.scp.stop()
    node.hl7.stop()


def run_node(settings: NodeSettings) -> None:
    """Run a node until SIGINT/SIGTERM."""
    node = Node(settings)
    node.start()
    local = settings.local
    log.info("node started", node=settings.name, scp=f"{local.aet}@{local.host}:{local.port}",
             site=f"http://{settings.http.host}:{settings.http.port}",
             network=f"https://{settings.http.network_host}:{settings.http.network_port}")
    try:
        asyncio.run(_serve(node))
    finally:
        node.stop()
        log.info("node stopped", node=settings.name)
