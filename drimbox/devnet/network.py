"""The demo network: a registry and two sites, each a real Orthanc PACS plus a node, on loopback.

Used by ``drimbox demo`` and by end-to-end tests. Every site gets its own loopback address (site-a
127.0.0.2, site-b 127.0.0.3, registry 127.0.0.4) so that checks by host are real; a local test CA in
``WORKDIR/pki`` issues every certificate; ``WORKDIR/endpoints.json`` describes the running network
for other tools (the contract of DESIGN §5 — keep its shape).

Users log in through the demo's identity provider, the real npm ``oidc-provider``
(:class:`~drimbox.devnet.oidc.OidcProvider`) on 127.0.0.5: each site is one of its clients, and
``WORKDIR/idp.json`` gives its issuer, signing key (the key ``drimbox dev-token`` signs with, so
minted tokens and the provider's verify alike) and the test practitioners with their passwords.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from drimbox.devnet.oidc import OidcAccount, OidcClientRegistration, OidcProvider
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.pki import TestCA
from drimbox.devnet.ports import free_port
from drimbox.devnet.process import ChildProcess, DevnetError, stop_all, tail
from drimbox.devnet.trustlist import TrustListFiles, write_trust_list_files
from drimbox.reports import INS_NIR_OID, INS_NIR_TEST_OID
from drimbox.testdata import GeneratedStudy
from drimbox.testdata.cda import PARIS, ReportSpec, make_report_cda
from registry.trustlist import ListedNode

__all__ = ["DEMO_ACCOUNTS", "DEMO_AUDIENCE", "DemoNetwork", "SitePlan", "demo_oru"]

DEMO_AUDIENCE = "drimbox"
REGISTRY_ADDRESS = "127.0.0.4"
IDP_ADDRESS = "127.0.0.5"
TOOL_ADDRESS = "127.0.0.1"
TOOL_CLIENT = "tool"
"""The test tool of endpoints.json (its certificate, its trust-list entry, the client its tokens name)."""
DEMO_ACCOUNTS: tuple[tuple[str, str, str, str], ...] = (
    ("10101010101", "Dr Test Radiologue", "Test", "Radiologue"),
    ("20202020202", "Dr Second Lecteur", "Second", "Lecteur"),
)
"""Test practitioners of the demo's identity provider: RPPS, name, given name, family name
(passwords are drawn per demo and written to ``idp.json``)."""
_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class SitePlan:
    """Where one site's services listen."""

    name: str
    address: str
    node_aet: str
    pacs_aet: str
    http_port: int
    network_port: int
    dimse_port: int
    hl7_port: int
    pacs_http_port: int
    pacs_dicom_port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    @property
    def network_url(self) -> str:
        return f"https://{self.address}:{self.network_port}"


def _plan_sites(base_port: int | None) -> tuple[list[SitePlan], int]:
    """Ports: ``base_port`` + fixed offsets when given (registry at base), else free ports."""

    def port(address: str, offset: int) -> int:
        return base_port + offset if base_port is not None else free_port(address)

    sites = []
    for index, (name, address) in enumerate((("site-a", "127.0.0.2"), ("site-b", "127.0.0.3"))):
        first = 10 * (index + 1)
        letter = name[-1].upper()
        sites.append(
            SitePlan(
                name=name,
                address=address,
                node_aet=f"DRIMBOX_{letter}",
                pacs_aet=f"PACS_{letter}",
                http_port=port(address, first),
                network_port=port(address, first + 1),
                dimse_port=port(address, first + 2),
                hl7_port=port(address, first + 3),
                pacs_http_port=port("0.0.0.0", first + 4),
                pacs_dicom_port=port("0.0.0.0", first + 5),
            )
        )
    return sites, port(REGISTRY_ADDRESS, 0)


def _drimbox_command() -> list[str]:
    """How to call this same installation's ``drimbox`` from another process."""
    script = Path(sys.executable).with_name("drimbox")
    if script.exists():
        return [str(script)]
    found = shutil.which("drimbox")
    return [found] if found else [sys.executable, "-m", "drimbox"]


class DemoNetwork:
    """Start, describe and stop the whole demo network in ``workdir``."""

    def __init__(
        self, workdir: Path, *, base_port: int | None = None, progress: Callable[[str], None] = lambda _: None
    ) -> None:
        self.workdir = workdir.resolve()
        self.sites, self.registry_port = _plan_sites(base_port)
        self.idp_port = base_port + 6 if base_port is not None else free_port(IDP_ADDRESS)
        self.idp: OidcProvider | None = None
        self._progress = progress
        self._orthancs: dict[str, OrthancProcess] = {}
        self._children: list[ChildProcess] = []
        self.ca: TestCA | None = None
        self.trust_list_files: TrustListFiles | None = None

    # -- start ------------------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start every part, wait until each answers, write and return ``endpoints.json``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._make_pki()
            self._start_idp()
            self._start_registry()
            for site in self.sites:
                self._start_site(site)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        endpoints = self.endpoints()
        (self.workdir / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
        return endpoints

    def _make_pki(self) -> None:
        self._progress("test CA and certificates")
        pki = self.workdir / "pki"
        self.ca = TestCA.create(pki)
        for site in self.sites:
            self.ca.issue(site.name, hosts=[site.address, f"{site.name}.localhost", "localhost"])
        self.ca.issue("registry", hosts=[REGISTRY_ADDRESS, "registry.localhost", "localhost"])
        self.ca.issue("tool", hosts=[TOOL_ADDRESS], server=False)
        self.ca.issue_signing_key("idp")
        # F11: the registry publishes the signed list of the network's nodes; the test tool of the
        # contract (endpoints.json "tls") is listed too, as if it were a consumer node.
        listed = [ListedNode(i, s.address, s.address, f"Demo {s.name}", f"CN={s.name}", "support@devnet.invalid")
                  for i, s in enumerate(self.sites, 1)]
        listed.append(ListedNode(len(listed) + 1, TOOL_ADDRESS, TOOL_ADDRESS, "Outil de test", "CN=tool",
                                 "support@devnet.invalid"))
        self.trust_list_files = write_trust_list_files(self.ca, pki / "trustlist", listed)

    def _trust_list(self) -> TrustListFiles:
        if self.trust_list_files is None:
            raise DevnetError("the trust list is made with the PKI, before anything starts")
        return self.trust_list_files

    @property
    def issuer(self) -> str:
        """The demo identity provider's issuer: ``iss`` of every user token, for the nodes and the registry."""
        return f"http://{IDP_ADDRESS}:{self.idp_port}"

    def _start_idp(self) -> None:
        """The identity provider, with the demo's practitioners and one confidential client per site."""
        self._progress(f"identity provider (oidc-provider) on {IDP_ADDRESS}:{self.idp_port}")
        pki = self.workdir / "pki"
        accounts = [OidcAccount(rpps=rpps, password=secrets.token_urlsafe(12), name=name, given_name=given,
                                family_name=family) for rpps, name, given, family in DEMO_ACCOUNTS]
        clients = []
        for site in self.sites:
            secret = secrets.token_urlsafe(32)
            _write_secret(self.workdir / site.name / "oidc-secret", secret)
            clients.append(OidcClientRegistration(site.name, secret, (f"{site.base_url}/auth/callback",)))
        self.idp = OidcProvider(self.workdir / "idp", signing_key=pki / "idp.key", accounts=accounts,
                                clients=clients, host=IDP_ADDRESS, port=self.idp_port, audience=DEMO_AUDIENCE)
        self.idp.start()
        idp = {
            "issuer": self.issuer,
            "audience": DEMO_AUDIENCE,
            "signing_key": str(pki / "idp.key"),
            "public_key": str(pki / "idp.pub.pem"),
            "discovery": self.idp.discovery_url,
            # The client `drimbox dev-token` names (azp): the test tool's, trust-listed with the tool's certificate.
            "client_id": TOOL_CLIENT,
            # Test practitioners: log in with the RPPS as identifier and this password.
            "accounts": [{"rpps": a.rpps, "password": a.password, "name": a.name, "role": a.role} for a in accounts],
        }
        _write_secret(self.workdir / "idp.json", json.dumps(idp, indent=2) + "\n")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ChildProcess:
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        child = ChildProcess(argv, log_path=logs / f"{name}.log", cwd=self.workdir,
                             env={"PYTHONUNBUFFERED": "1", **(env or {})})
        self._children.append(child)
        return child

    def _start_registry(self) -> None:
        self._progress(f"registry on {REGISTRY_ADDRESS}:{self.registry_port}")
        self._spawn(
            "registry",
            [
                *_drimbox_command(),
                "registry",
                "serve",
                "--host",
                REGISTRY_ADDRESS,
                "--port",
                str(self.registry_port),
                "--data-dir",
                str(self.workdir / "registry"),
                # VIHF assertions and DSG signatures of the sites are signed with demo-CA certificates.
                "--trusted-ca-file",
                str(self.workdir / "pki" / "ca.pem"),
                # The MHD view takes the bearer tokens of the demo's identity provider, like the nodes.
                "--token-issuer",
                self.issuer,
                "--token-audience",
                DEMO_AUDIENCE,
                "--token-public-key-file",
                str(self.workdir / "pki" / "idp.pub.pem"),
                "--public-url",
                self.registry_url,
                *self._trust_list().registry_args(),
            ],
        )

    def _start_site(self, site: SitePlan) -> None:
        self._progress(f"{site.name}: Orthanc PACS {site.pacs_aet} and node {site.node_aet} on {site.address}")
        site_dir = self.workdir / site.name
        orthanc = OrthancProcess(
            site_dir / "pacs",
            aet=site.pacs_aet,
            host="127.0.0.1",
            http_port=site.pacs_http_port,
            dicom_port=site.pacs_dicom_port,
            name=f"{site.name} PACS",
            modalities={"drimbox": (site.node_aet, site.address, site.dimse_port)},
        )
        self._orthancs[site.name] = orthanc
        orthanc.start()
        config = self._write_node_config(site, orthanc)
        self._spawn(f"{site.name}-node", [*_drimbox_command(), "serve", "--config", str(config)])

    def _write_node_config(self, site: SitePlan, orthanc: OrthancProcess) -> Path:
        pki = self.workdir / "pki"
        site_dir = self.workdir / site.name
        settings = {
            "name": site.name,
            "local": {"aet": site.node_aet, "host": site.address, "port": site.dimse_port},
            "pacs": {
                "aet": orthanc.aet,
                "host": orthanc.dicom_host,
                "port": orthanc.dicom_port,
                "rest_url": orthanc.http_url,
            },
            "http": {
                "host": site.address,
                "port": site.http_port,
                "network_host": site.address,
                "network_port": site.network_port,
                "public_network_url": site.network_url,
            },
            "hl7": {"host": site.address, "port": site.hl7_port},
            "tls": {
                "ca_file": str(pki / "ca.pem"),
                "cert_file": str(pki / f"{site.name}.pem"),
                "key_file": str(pki / f"{site.name}.key"),
            },
            # Tokens verified by OIDC discovery + JWKS (key rotation), at the eIDAS level Pro Santé Connect gives.
            "auth": {"issuer": self.issuer, "audience": DEMO_AUDIENCE, "required_acr": "eidas1"},
            # Browser login of the site's users at the demo's identity provider (client id = site name).
            "oidc": {"issuer": self.issuer, "client_id": site.name,
                     "client_secret_file": str(site_dir / "oidc-secret"), "public_url": site.base_url},
            "registry": {"base_url": self.registry_url},
            "storage": {"data_dir": str(site_dir / "node-data")},
            # KOS publication (F3): signed with the site's certificate (tls.*), trusted by the registry.
            "publish": {"organisation_id": f"1{site.dimse_port:09d}", "organisation_name": f"Demo {site.name}",
                        "publish_cda": True},
            # F7: RetrieveURLs are followed to the demo's sites only (the static stand-in for the trust list).
            # DESIGN §2b: each node's OIDC client (the site's name; the test tool's "tool"), by its db host.
            "peers": {"hosts": [s.address for s in self.sites], "source_address": site.address,
                      "clients": {**{s.address: [s.name] for s in self.sites}, TOOL_ADDRESS: [TOOL_CLIENT]}},
            # F11: the signed list from the registry supersedes [peers]; the last good copy is kept on disk.
            "trust_list": {**self._trust_list().node_settings(f"{self.registry_url}/whitelist"),
                           "file": str(site_dir / "whitelist.xml")},
            # F8: imports keep the site's own IPP as PatientID, the INS in OtherPatientIDsSequence.
            "retrieve": {"identity_rule": "local", "local_issuer": f"DEMO-{site.name.upper()}",
                         "ins_oids": [INS_NIR_OID, INS_NIR_TEST_OID]},
        }
        settings["screening"] = self._screening_settings(site)
        path = site_dir / "node.toml"
        path.write_text(tomli_w.dumps(settings))
        return path

    def _screening_settings(self, site: SitePlan) -> dict[str, Any]:
        """Screening second reads (pilot): site A also plays the programme (CRCDC) with one reader per site
        (the demo's practitioners in order: RPPS 10101010101 reads at site A, 20202020202 at site B)."""
        programme = self.sites[0]
        if site.name != programme.name:
            return {"enabled": True, "programme_url": programme.network_url}
        readers = [{"rpps": rpps, "node": s.network_url, "name": name}
                   for (rpps, name, _, _), s in zip(DEMO_ACCOUNTS, self.sites, strict=False)]
        return {"enabled": True, "programme": True, "readers": readers}

    def _wait_ready(self, urls: list[str] | None = None) -> None:
        """Wait until every URL (default: the registry's and every node's ``/healthz``) answers 200."""
        urls = urls or [f"{self.registry_url}/healthz", *(f"{s.base_url}/healthz" for s in self.sites)]
        deadline = time.monotonic() + _READY_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            for url in urls:
                while True:
                    self._check_children()
                    try:
                        if client.get(url).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise DevnetError(f"{url} did not answer within {_READY_TIMEOUT_S:.0f} s")
                    time.sleep(0.1)
        self._progress("every service answers")

    def _check_children(self) -> None:
        for child in self._children:
            if child.poll() is not None:
                raise DevnetError(
                    f"{' '.join(child.argv[-4:])} exited with status {child.poll()}:\n{tail(child.log_path)}"
                )

    # -- description ------------------------------------------------------------------------------

    @property
    def registry_url(self) -> str:
        return f"http://{REGISTRY_ADDRESS}:{self.registry_port}"

    def orthanc(self, site: str) -> OrthancProcess:
        """The PACS of ``site``."""
        return self._orthancs[site]

    def node_config(self, site: str) -> Path:
        """The settings file the node of ``site`` runs with."""
        return self.workdir / site / "node.toml"

    def endpoints(self) -> dict[str, Any]:
        """The ``endpoints.json`` contract (DESIGN §5)."""
        pki = self.workdir / "pki"
        registry = self.registry_url
        nodes = []
        for site in self.sites:
            orthanc = self._orthancs[site.name]
            nodes.append(
                {
                    "name": site.name,
                    "base_url": site.base_url,
                    "dicomweb": f"{site.base_url}/dicom-web",
                    "network_dicomweb": f"{site.network_url}/dicom-web",
                    "viewer": f"{site.base_url}/",
                    "dimse": {"aet": site.node_aet, "host": site.address, "port": site.dimse_port},
                    "hl7": {"host": site.address, "port": site.hl7_port},
                    "config": str(self.node_config(site.name)),
                    "pacs": {
                        "aet": orthanc.aet,
                        "host": orthanc.dicom_host,
                        "port": orthanc.dicom_port,
                        "rest": orthanc.http_url,
                    },
                }
            )
        return {
            "registry": {
                "base_url": registry,
                "xds_registry": f"{registry}/xds/registry",
                "xds_repository": f"{registry}/xds/repository",
                "fhir": f"{registry}/fhir",
                "whitelist": f"{registry}/whitelist",
            },
            "nodes": nodes,
            "tls": {
                "ca": str(pki / "ca.pem"),
                "client_cert": str(pki / "tool.pem"),
                "client_key": str(pki / "tool.key"),
            },
            "token_command": [*_drimbox_command(), "dev-token", "--workdir", str(self.workdir)],
        }

    # -- reports ----------------------------------------------------------------------------------

    def send_report(self, site: str, study: GeneratedStudy, *, timeout: float = 30.0) -> str:
        """Send the validated report of a study to a site's node over MLLP, as its RIS would (F1).

        The node ACKs once the publication job is queued, then publishes the KOS to the registry.
        Returns the ACK code (``AA``; a patient without INS is accepted, then dead-lettered).
        """
        plan = next(s for s in self.sites if s.name == site)
        message = demo_oru(study, control_id=f"DEMO-{study.accession_number}")
        with socket.create_connection((plan.address, plan.hl7_port), timeout=timeout) as sock:
            sock.sendall(b"\x0b" + message + b"\x1c\r")
            answer = b""
            while b"\x1c\r" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise DevnetError(f"{site}: the node closed the MLLP connection without an ACK")
                answer += chunk
        msa = next((line for line in answer.split(b"\r") if line.startswith(b"MSA")), b"MSA|??")
        return msa.split(b"|")[1].decode()

    # -- faults -----------------------------------------------------------------------------------

    def _node_child(self, site: str) -> ChildProcess:
        return next(c for c in self._children if c.argv[-1] == str(self.node_config(site)))

    def kill_node(self, site: str) -> None:
        """SIGKILL the node of ``site`` (a crash: nothing flushed, no goodbye), and wait for it."""
        child = self._node_child(site)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        self._children.remove(child)

    def restart_node(self, site: str, *, env: dict[str, str] | None = None) -> None:
        """Start the node of ``site`` again with the same settings, and wait until it answers.

        Call it from a thread that outlives the node (e.g. the main thread): children die with the
        thread that started them (PR_SET_PDEATHSIG), so a short-lived helper thread would take the node with it.
        ``env`` adds ``DRIMBOX_*`` overrides for this run of the node (e.g. another trust-list URL).
        """
        plan = next(s for s in self.sites if s.name == site)
        self._spawn(f"{site}-node", [*_drimbox_command(), "serve", "--config", str(self.node_config(site))], env=env)
        self._wait_ready([f"{plan.base_url}/healthz"])

    # -- stop -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child (nodes first, so they stop using their PACS), in parallel per tier."""
        stop_all(self._children)
        self._children.clear()
        for orthanc in self._orthancs.values():
            orthanc.terminate()
        if self.idp is not None:
            self.idp.terminate()
        for orthanc in self._orthancs.values():
            orthanc.wait()
        if self.idp is not None:
            self.idp.wait()
            self.idp = None


def _write_secret(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (client secrets, passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def demo_oru(study: GeneratedStudy, *, control_id: str) -> bytes:
    """An ORU^R01 (HL7 v2.5, CI-SIS profile) carrying a generated report CDA for ``study``.

    PID-3 gives the INS (with PID-32 ``VALI``) when the patient has one, and the local IPP.
    """
    patient = study.patient
    # The report is written the day of the exam (an hour after it), so serviceStartTime is the study's date.
    when = datetime.strptime(f"{study.study_date or '20250114'}1130", "%Y%m%d%H%M").replace(tzinfo=PARIS)
    spec = ReportSpec(patient=patient, study_instance_uid=study.study_instance_uid,
                      accession_number=study.accession_number, document_id=f"{study.study_instance_uid}.9",
                      set_id=f"DEMO-{study.accession_number}", modality=study.modality, effective_time=when)
    cda = base64.b64encode(make_report_cda(spec)).decode("ascii")
    ids = f"{patient.ipp}^^^{patient.ipp_issuer}&{spec.ipp_oid}&ISO^PI"
    if patient.ins:
        ids = f"{patient.ins}^^^ASIP-SANTE-INS-NIR&{patient.ins_oid}&ISO^INS~{ids}"
    status = "VALI" if patient.ins else "PROV"
    segments = [
        f"MSH|^~\\&|RIS_DEMO|DEMO|DRIMBOX|DEMO|{study.study_date or '20250114'}100000||ORU^R01^ORU_R01"
        f"|{control_id}|P|2.5|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2",
        f"PID|||{ids}||{patient.family}^{patient.given}^^^^^L||{patient.birth_date}|{patient.sex}"
        f"|||||||||||||||||||||||N|{status}",
        "PV1|1|O",
        "ORC|NW|",
        f"OBR|1|||18748-4^CR d'imagerie médicale^LN|||||||||||||||{study.accession_number}|||||||F",
        f"OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^TEXT^XML^Base64^{cda}||||||F|",
        "OBX|2|CE|DESTDMP^Destinataire DMP^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F|",
    ]
    return "\r".join(segments).encode("utf-8") + b"\r"
