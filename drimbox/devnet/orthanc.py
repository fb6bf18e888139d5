"""A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) as a site PACS, for tests and the demo.

Each :class:`OrthancProcess` owns a work directory holding its generated ``config.json``, its storage
(``db/``) and its logs (``logs/``). It is started once per test session (start ~0.1 s, stop 2.5-5 s)
and emptied between tests with :meth:`OrthancProcess.reset` through the REST API.

Binding: Orthanc 1.10.1 has no option to choose the listening address of either server. Its default
configuration (``Orthanc --config=FILE`` dumps it) only has ``HttpPort`` / ``DicomPort``; the HTTP
server gets ``listening_ports=<port>`` and the DICOM server binds ``INADDR_ANY``, so both listen on
0.0.0.0. What keeps the dev PACS private instead:

- HTTP: ``RemoteAccessAllowed: false`` answers 401 to any client whose address is not exactly
  127.0.0.1 (or ::1) -- so a client that binds another loopback source address (e.g. 127.0.0.2) is
  refused too; an unbound client connecting to any 127.x address uses source 127.0.0.1 and is fine.
- DICOM: strict called AET, find/get/move/store only for declared modalities (and, optionally,
  only from the declared host: see ``check_modality_host``).

``host`` is therefore only the address the devnet *advertises* (URLs, :meth:`remote_ae`, the
DICOMweb plugin's ``Host`` used in RetrieveURLs); any loopback address reaches the server.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import httpx

from drimbox.config import RemoteAE
from drimbox.devnet.errors import DevnetError
from drimbox.devnet.ports import free_port, wait_for_port
from drimbox.devnet.process import ChildProcess, ManagedServer, tail

__all__ = ["DICOMWEB_PLUGIN", "Modality", "OrthancProcess"]

DICOMWEB_PLUGIN = "/usr/lib/orthanc/libOrthancDicomWeb.so.1.7"

Modality = tuple[str, str, int]
"""A DICOM peer as Orthanc's ``DicomModalities`` knows it: (AE title, host, port)."""


def _modality_entry(aet: str, host: str, port: int) -> dict[str, Any]:
    return {
        "AET": aet,
        "Host": host,
        "Port": port,
        # Declared peers may do everything, including storage commitment (the node asks for it
        # after publishing); undeclared callers may only C-ECHO (see _config).
        "AllowEcho": True,
        "AllowFind": True,
        "AllowGet": True,
        "AllowMove": True,
        "AllowStore": True,
        "AllowStorageCommitment": True,
    }


class OrthancProcess(ManagedServer):
    """One Orthanc server: generated config, own storage, started on construction via :meth:`start`.

    Parameters
    ----------
    workdir:
        Directory for ``config.json``, ``db/`` and ``logs/`` (created if missing).
    aet:
        Orthanc's own AE title; the called AET is checked strictly.
    host:
        Address advertised for both servers (Orthanc itself listens on 0.0.0.0, see module doc).
    http_port, dicom_port:
        Ports; free ones are picked when omitted.
    modalities:
        Peers Orthanc knows (name -> (aet, host, port)): C-MOVE destinations and allowed SCUs.
    dicomweb_servers:
        Remote DICOMweb servers for the plugin (name -> base URL), e.g. another site's gateway.
    check_modality_host:
        Also require that a declared AET calls from its declared host. Off by default: on Linux a
        client connecting to any 127.x address uses source 127.0.0.1 unless it binds its socket,
        so a node declared as 127.0.0.2 would be refused unless its SCU binds that address.
    extra_config:
        Top-level options merged last (e.g. TLS settings), for what this class does not cover.
    """

    _stop_timeout_s = 15.0  # Orthanc takes 2.5-5 s to stop

    def __init__(
        self,
        workdir: Path,
        *,
        aet: str = "ORTHANC",
        host: str = "127.0.0.1",
        http_port: int | None = None,
        dicom_port: int | None = None,
        modalities: Mapping[str, Modality] | None = None,
        dicomweb_servers: Mapping[str, str] | None = None,
        check_modality_host: bool = False,
        extra_config: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self._aet = aet
        self._host = host
        # Orthanc binds the wildcard address, so the port must be free on every address, not just
        # on ``host``: probe the wildcard (the probe never listens).
        self._http_port = http_port or free_port("0.0.0.0")
        self._dicom_port = dicom_port or free_port("0.0.0.0")
        self._modalities: dict[str, Modality] = dict(modalities or {})
        self._dicomweb_servers = dict(dicomweb_servers or {})
        self._check_modality_host = check_modality_host
        self._extra_config = dict(extra_config or {})
        self._name = name or aet
        super().__init__()
        self._client: httpx.Client | None = None

    # -- addresses -------------------------------------------------------------------------------

    @property
    def aet(self) -> str:
        """Orthanc's AE title."""
        return self._aet

    @property
    def dicom_host(self) -> str:
        """Address advertised for the DICOM server."""
        return self._host

    @property
    def dicom_port(self) -> int:
        """DICOM port."""
        return self._dicom_port

    @property
    def http_port(self) -> int:
        """HTTP port."""
        return self._http_port

    @property
    def http_url(self) -> str:
        """Base URL of the REST API (no trailing slash)."""
        return f"http://{self._host}:{self._http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Base URL of the DICOMweb plugin (no trailing slash)."""
        return f"{self.http_url}/dicom-web"

    @property
    def config_path(self) -> Path:
        """The generated configuration file."""
        return self.workdir / "config.json"

    @property
    def log_dir(self) -> Path:
        """Orthanc's ``--logdir``."""
        return self.workdir / "logs"

    def remote_ae(self, timeout_s: float = 30.0) -> RemoteAE:
        """The node's view of this PACS (C-GET capable, with its REST base URL)."""
        return RemoteAE(
            aet=self._aet,
            host=self._host,
            port=self._dicom_port,
            timeout_s=timeout_s,
            supports_c_get=True,
            rest_url=self.http_url,
        )

    # -- life cycle ------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        storage = str(self.workdir / "db")
        config: dict[str, Any] = {
            "Name": self._name,
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            # Stored bytes are served as-is: no CPU spent on zlib, and WADO/C-GET stay fast.
            "StorageCompression": False,
            # The devnet's data is disposable; an fsync per instance only slows uploads down.
            "SyncStorageArea": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "HttpPort": self._http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            # Compression costs CPU on loopback and distorts throughput measurements.
            "HttpCompressionEnabled": False,
            # Hardening, and WebDAV's upload thread adds ~1.5 s to every shutdown.
            "WebDavEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self._aet,
            "DicomPort": self._dicom_port,
            # A strict site PACS: wrong called AET is rejected, so the node must get it right.
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": self._check_modality_host,
            # C-ECHO reveals nothing and lets anyone check liveness; C-STORE, like C-FIND/C-GET/
            # C-MOVE (whose defaults are already false), is only for declared modalities.
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": False,
            "DicomModalities": {name: _modality_entry(*modality) for name, modality in self._modalities.items()},
            "DicomModalitiesInDatabase": False,
            # Without this C-FIND answers are Latin-1 (ORTHANC-NOTES.md pitfall 4).
            "DefaultEncoding": "Utf8",
            # Accept whatever a generator produces (private/new SOP classes) rather than fail a test.
            "UnknownSopClassAccepted": True,
            # Idle associations are closed after this; long enough for the node's pooled associations.
            "DicomScpTimeout": 60,
            # Outgoing associations (C-MOVE sub-operations to the node, storage commitment reports).
            "DicomScuTimeout": 30,
            # The largest PDU Orthanc allows: fewer PDUs per instance on big images.
            "MaximumPduLength": 131072,
            "OverwriteInstances": True,
            "StorageCommitmentReportsSize": 100,
            "SaveJobs": False,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                # Used by the plugin to build RetrieveURLs in QIDO answers.
                "Host": f"{self._host}:{self._http_port}",
                "Ssl": False,
                # The plugin wants [url] (optionally [url, user, password]); a bare string is a
                # "Bad file format" error that only shows in the log.
                "Servers": {name: [url] for name, url in self._dicomweb_servers.items()},
            },
        }
        config.update(self._extra_config)
        return config

    def start(self, timeout: float = 20.0) -> Self:
        """Write the configuration, start Orthanc and wait until ``GET /system`` answers.

        Raises
        ------
        DevnetError
            When Orthanc exits early or does not answer within ``timeout``; the message ends
            with the tail of its log.
        """
        if self._proc is not None:
            raise DevnetError("Orthanc is already running")
        if shutil.which("Orthanc") is None:
            raise DevnetError("the Orthanc binary is not installed (Debian package 'orthanc')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "db").mkdir(exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.config_path.write_text(json.dumps(self._config(), indent=2), encoding="utf-8")
        self._proc = ChildProcess(
            ["Orthanc", f"--logdir={self.log_dir}", str(self.config_path)],
            log_path=self.workdir / "orthanc.out",
            cwd=self.workdir,
        )
        # trust_env=False: a developer's HTTP(S)_PROXY must not capture loopback traffic.
        self._client = httpx.Client(base_url=self.http_url, timeout=30.0, trust_env=False)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None and self._client is not None
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            status = self._proc.poll()
            if status is not None:
                raise DevnetError(f"Orthanc exited with status {status} during start-up\n{self.log_tail()}")
            try:
                if self._client.get("/system", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() >= deadline:
                raise DevnetError(f"Orthanc did not answer GET /system within {timeout:g} s\n{self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        # HTTP answering does not prove the DICOM server is already accepting associations.
        wait_for_port("127.0.0.1", self._dicom_port, max(0.1, deadline - time.monotonic()))

    def log_tail(self, lines: int = 40) -> str:
        """The end of Orthanc's log (for error messages)."""
        logs = sorted(self.log_dir.glob("Orthanc.log*"), key=lambda p: p.stat().st_mtime)
        parts = [tail(self.workdir / "orthanc.out", lines)]
        if logs:
            parts.append(tail(logs[-1], lines))
        return "\n".join(part for part in parts if part)

    def _released(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- REST helpers ----------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        """An HTTP client on the REST API (base URL set)."""
        if self._client is None:
            raise DevnetError("Orthanc is not running")
        return self._client

    def reset(self) -> None:
        """Delete every patient and undo runtime modality changes: a fresh PACS in milliseconds."""
        patients = self.client.get("/patients")
        patients.raise_for_status()
        ids: list[str] = patients.json()
        if ids:
            # One request for all (Orthanc >= 1.9.4) instead of one DELETE per patient.
            self.client.post("/tools/bulk-delete", json={"Resources": ids}).raise_for_status()
        self._restore_modalities()

    def _restore_modalities(self) -> None:
        current = self.client.get("/modalities", params={"expand": ""})
        current.raise_for_status()
        live: dict[str, dict[str, Any]] = current.json()
        for name in live.keys() - self._modalities.keys():
            self.client.delete(f"/modalities/{name}").raise_for_status()
        for name, (aet, host, port) in self._modalities.items():
            entry = live.get(name)
            if entry is None or (entry.get("AET"), entry.get("Host"), entry.get("Port")) != (aet, host, port):
                self._put_modality(name, aet, host, port)

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """Declare (or replace) a DICOM peer at runtime, e.g. a C-MOVE destination started by a test.

        Runtime changes are undone by :meth:`reset`; pass ``modalities`` to the constructor for
        permanent ones.
        """
        self._put_modality(name, aet, host, port)

    def _put_modality(self, name: str, aet: str, host: str, port: int) -> None:
        self.client.put(f"/modalities/{name}", json=_modality_entry(aet, host, port)).raise_for_status()

    def upload(self, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
        """Store DICOM files through ``POST /instances``; returns Orthanc's instance ids in order."""
        ids: list[str] = []
        for path in paths:
            with open(path, "rb") as fh:
                # A file object is streamed in chunks: multi-MB mammograms are not read into memory.
                response = self.client.post("/instances", content=fh, headers={"Content-Type": "application/dicom"})
            if response.status_code != 200:
                raise DevnetError(f"Orthanc refused {path}: HTTP {response.status_code} {response.text[:200]}")
            ids.append(response.json()["ID"])
        return ids

    def instance_count(self) -> int:
        """Number of instances stored."""
        response = self.client.get("/statistics")
        response.raise_for_status()
        count: int = response.json()["CountInstances"]
        return count
