"""DCMTK's ``dcmqrscp`` as a second, strict PACS for the node's DIMSE paths.

dcmqrscp only implements the standard hierarchical query model: a query below the study level
without the unique keys of the levels above (e.g. IMAGE level without SeriesInstanceUID) fails
instead of being "helpfully" answered as Orthanc does. It is there to catch clients that rely on
relational queries they did not negotiate. With ``--check-find`` (used here) it also refuses keys
of a lower level than the query level -- e.g. a STUDY query carrying Modality (0008,0060) instead of
ModalitiesInStudy fails with 0xA900 -- where it would otherwise fail with 0xC001 or ignore them.

Loading is done with ``dcmqridx`` (one process for a whole batch, no network, ~ms per file): each
file is hard-linked (copied across file systems) into the storage area first, because dcmqrscp's
quota system deletes the files of the oldest study when a C-STORE overflows it, and it must never
delete a caller's files. dcmqridx itself runs with the quota system off.

Transfer syntaxes: dcmqrscp registers no codecs, so it can only convert between the uncompressed
syntaxes. With its default negotiation (used here) it accepts, for every storage SOP class, C-STORE
and the C-GET storage sub-operations in explicit little/big endian and implicit little endian.
An association-profile file (``-xf``) does not help: it allows 128 presentation contexts at most and
one transfer syntax per SOP class is chosen per association, so a compressed file is sent only if
the peer happened to accept exactly its syntax. :meth:`DcmqrscpProcess.load` therefore refuses
compressed files up front, with a clear message, instead of letting a later C-GET fail with
"Refused: OutOfResourcesSubOperations".

Binding: dcmqrscp 3.6.7 has no option for its listening address; it binds 0.0.0.0 (like Orthanc).
``host`` is the address advertised to clients.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Self

from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from drimbox.config import RemoteAE
from drimbox.devnet.dcmtk import dcmtk_env, dcmtk_tool
from drimbox.devnet.errors import DevnetError
from drimbox.devnet.ports import free_port
from drimbox.devnet.process import ChildProcess, ManagedServer, tail

__all__ = ["DcmqrscpProcess"]

_MAX_PDU = 131072  # dcmqrscp's upper bound: fewer PDUs per image
_MAX_STUDIES = 500  # DB_UpperMaxStudies: dcmqrscp refuses larger quotas
_MAX_STUDY_SIZE = "1024mb"  # DB_UpperMaxBytesPerStudy (1 GiB)
_INDEX_BATCH = 500  # files per dcmqridx call, to stay well under the argv limit
_UNCOMPRESSED = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian})


class DcmqrscpProcess(ManagedServer):
    """One dcmqrscp archive with a single AE (its own storage area, read/write, any peer).

    Parameters
    ----------
    workdir:
        Directory for ``dcmqrscp.cfg``, the storage area ``db/`` and ``dcmqrscp.log``.
    aet:
        Called AE title the archive answers to (dcmqrscp rejects any other).
    host:
        Address advertised to clients (dcmqrscp itself listens on 0.0.0.0).
    port:
        DICOM port; a free one is picked when omitted.
    move_destinations:
        C-MOVE destinations, AE title -> (host, port). Unknown destinations are refused (0xA801).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        aet: str = "DCMQRSCP",
        host: str = "127.0.0.1",
        port: int | None = None,
        move_destinations: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self._aet = aet
        self._host = host
        self._port = port or free_port("0.0.0.0")
        self._destinations = dict(move_destinations or {})
        super().__init__()

    @property
    def aet(self) -> str:
        """The archive's AE title."""
        return self._aet

    @property
    def dicom_host(self) -> str:
        """Address advertised to clients."""
        return self._host

    @property
    def dicom_port(self) -> int:
        """DICOM port."""
        return self._port

    @property
    def storage_dir(self) -> Path:
        """The AE's storage area (files and ``index.dat``)."""
        return self.workdir / "db"

    @property
    def config_path(self) -> Path:
        """The generated configuration file."""
        return self.workdir / "dcmqrscp.cfg"

    @property
    def log_path(self) -> Path:
        """dcmqrscp's output."""
        return self.workdir / "dcmqrscp.log"

    def remote_ae(self, timeout_s: float = 30.0) -> RemoteAE:
        """The node's view of this PACS: C-GET capable, no REST API."""
        return RemoteAE(aet=self._aet, host=self._host, port=self._port, timeout_s=timeout_s, supports_c_get=True)

    # -- life cycle ------------------------------------------------------------------------------

    def _config(self) -> str:
        hosts = "\n".join(
            f"dest{i} = ({aet}, {host}, {port})"
            for i, (aet, (host, port)) in enumerate(sorted(self._destinations.items()))
        )
        return (
            "# Generated by drimbox.devnet.dcmqrscp\n"
            f"NetworkTCPPort  = {self._port}\n"
            f"MaxPDUSize      = {_MAX_PDU}\n"
            # Tests run retrievals in parallel; dcmqrscp forks one child per association.
            "MaxAssociations = 32\n"
            "HostTable BEGIN\n"
            f"{hosts}\n"
            "HostTable END\n"
            "VendorTable BEGIN\n"
            "VendorTable END\n"
            "AETable BEGIN\n"
            # ANY peer may query/retrieve: the strictness we want is in the query model, not in
            # peer filtering (which needs host names, not IPs, in this version).
            f"{self._aet} {self.storage_dir} RW ({_MAX_STUDIES}, {_MAX_STUDY_SIZE}) ANY\n"
            "AETable END\n"
        )

    def start(self, timeout: float = 10.0) -> Self:
        """Write the configuration, start dcmqrscp and wait until it answers a C-ECHO.

        Raises
        ------
        DevnetError
            When dcmqrscp exits early or does not answer within ``timeout`` (with its log tail).
        """
        if self._proc is not None:
            raise DevnetError("dcmqrscp is already running")
        for tool in ("dcmqrscp", "dcmqridx", "echoscu"):
            dcmtk_tool(tool)  # fail early, with a clear message, when DCMTK is missing
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config(), encoding="utf-8")
        argv = [
            dcmtk_tool("dcmqrscp"),
            "-c", str(self.config_path),
            # C-GET stays enabled (dcmqrscp's default; --disable-get would turn it off).
            # Validate C-FIND and C-MOVE identifiers: refuse what the strict model does not allow.
            "--check-find",
            "--check-move",
            # No reverse DNS per association: loopback peers, and it costs latency.
            "--disable-host-lookup",
            # Answers in UTF-8 when the request's character set cannot carry them (French names).
            "--convert-to-utf8",
            "--acse-timeout", "30",
            # Idle (pooled) associations are dropped after this, like Orthanc's DicomScpTimeout.
            "--dimse-timeout", "60",
        ]  # fmt: skip
        self._proc = ChildProcess(argv, log_path=self.log_path, cwd=self.workdir)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            status = self._proc.poll()
            if status is not None:
                raise DevnetError(f"dcmqrscp exited with status {status} during start-up\n{tail(self.log_path)}")
            if self.echo(timeout=2.0):
                return
            if time.monotonic() >= deadline:
                raise DevnetError(f"dcmqrscp did not answer C-ECHO within {timeout:g} s\n{tail(self.log_path)}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def echo(self, *, calling_aet: str = "ECHOSCU", timeout: float = 5.0) -> bool:
        """True if a C-ECHO (DCMTK ``echoscu``) to the archive succeeds."""
        try:
            result = subprocess.run(
                [dcmtk_tool("echoscu"), "-aet", calling_aet, "-aec", self._aet, "-to", str(max(1, int(timeout))),
                 "127.0.0.1", str(self._port)],
                env=dcmtk_env(),
                capture_output=True,
                timeout=timeout + 2,
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    # -- content ---------------------------------------------------------------------------------

    def load(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Index DICOM files into the archive (``dcmqridx``); returns how many were given.

        Only uncompressed transfer syntaxes are accepted (see module doc). Works while dcmqrscp
        runs: both use the index file's lock. Files are hard-linked into the storage area first
        (see module doc), so callers may delete or reuse theirs afterwards.
        """
        linked: list[str] = []
        for path in paths:
            syntax = read_file_meta_info(path).get("TransferSyntaxUID")
            if syntax not in _UNCOMPRESSED:
                raise DevnetError(
                    f"{path}: transfer syntax {syntax} cannot be served by dcmqrscp (no codecs); "
                    "load uncompressed files only"
                )
            target = self.storage_dir / f"{uuid.uuid4().hex}.dcm"
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)  # another file system, or links not allowed
            linked.append(str(target))
        for start in range(0, len(linked), _INDEX_BATCH):
            batch = linked[start : start + _INDEX_BATCH]
            result = subprocess.run(
                [dcmtk_tool("dcmqridx"), str(self.storage_dir), *batch], capture_output=True, text=True, check=False
            )
            # dcmqridx exits 0 even for files it could not register; it says so on stderr.
            if result.returncode != 0 or "E: " in result.stderr or "W: " in result.stderr:
                raise DevnetError(f"dcmqridx failed to index files: {result.stderr.strip()[-2000:]}")
        return len(linked)

    def reset(self) -> None:
        """Empty the archive: delete the index and every file of the storage area."""
        for entry in self.storage_dir.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def instance_count(self) -> int:
        """Number of instances registered in the index (``dcmqridx -p``)."""
        if not (self.storage_dir / "index.dat").exists():
            return 0
        result = subprocess.run(
            [dcmtk_tool("dcmqridx"), "-p", str(self.storage_dir)], capture_output=True, text=True, check=True
        )
        return sum(1 for line in result.stdout.splitlines() if "filename" in line.lower())
