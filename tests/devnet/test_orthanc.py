"""The devnet's Orthanc: real process life cycle, REST helpers, DIMSE reachability."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from drimbox.config import LocalAE
from drimbox.devnet.dcmtk import dcmtk_env, dcmtk_tool
from drimbox.devnet.errors import DevnetError
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port, wait_for_port

DicomFactory = Callable[..., tuple[list[Path], str, str]]
"""The ``tiny_dicom`` fixture: count -> (paths, study UID, series UID)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); Popen.wait() reaped ours, so anything left is a real process.
    return True


def _echo(aet: str, port: int, calling: str = "DCMTK", host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk_tool("echoscu"), "-aet", calling, "-aec", aet, "-to", "5", host, str(port)],
        env=dcmtk_env(), capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip


def test_start_ready_stop_leaves_nothing(tmp_path: Path) -> None:
    # One process for life cycle and generated configuration: each Orthanc stop costs 2.5-5 s.
    started = time.monotonic()
    with OrthancProcess(
        tmp_path / "o",
        aet="LIFECYCLE",
        dicomweb_servers={"peer": "http://127.0.0.3:1/dicom-web/"},
        modalities={"node": ("NODE", "127.0.0.2", 11112)},
        check_modality_host=True,
    ) as orthanc:
        startup = time.monotonic() - started
        pid = orthanc.pid
        assert pid is not None
        system = httpx.get(f"{orthanc.http_url}/system", trust_env=False).json()
        assert system["DicomAet"] == "LIFECYCLE"
        assert system["DicomPort"] == orthanc.dicom_port
        assert startup < 10
        config = json.loads(orthanc.config_path.read_text())
        assert config["DicomCheckCalledAet"] is True
        assert config["DefaultEncoding"] == "Utf8"
        assert config["OverwriteInstances"] is True
        assert config["DicomWeb"]["Servers"] == {"peer": ["http://127.0.0.3:1/dicom-web/"]}
        assert httpx.get(f"{orthanc.dicomweb_url}/servers", trust_env=False).json() == ["peer"]
        # check_modality_host: a declared AET must call from its declared address. An unbound
        # client's source is 127.0.0.1 whatever loopback address it dials; binding fixes that.
        assert not _can_find(orthanc, "NODE", bind=None)
        assert _can_find(orthanc, "NODE", bind="127.0.0.2")
    assert orthanc.pid is None
    assert not _alive(pid)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{orthanc.http_url}/system", trust_env=False, timeout=1)


def _can_find(orthanc: OrthancProcess, calling: str, bind: str | None) -> bool:
    ae = AE(ae_title=calling)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(
        orthanc.dicom_host,
        orthanc.dicom_port,
        ae_title=orthanc.aet,
        bind_address=(bind, 0) if bind else None,
    )
    if not assoc.is_established:
        return False
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        # An empty status dataset means no response at all (Orthanc aborted the association).
        responses = assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
        return [status.get("Status") for status, _ in responses] == [0x0000]
    finally:
        assoc.release()


def test_early_exit_raises_with_log_tail(tmp_path: Path) -> None:
    # Both servers on one port: the second bind fails and Orthanc exits during start-up.
    port = free_port("0.0.0.0")
    orthanc = OrthancProcess(tmp_path / "o", http_port=port, dicom_port=port)
    with pytest.raises(DevnetError, match="exited with status"):
        orthanc.start(timeout=10)
    assert orthanc.pid is None


def test_reset_empties(orthanc_a_clean: OrthancProcess, tiny_dicom: DicomFactory) -> None:
    paths, _, _ = tiny_dicom(3)
    orthanc_a_clean.upload(paths)
    assert orthanc_a_clean.instance_count() == 3
    started = time.monotonic()
    orthanc_a_clean.reset()
    assert time.monotonic() - started < 2
    assert orthanc_a_clean.instance_count() == 0


def test_upload_and_count(orthanc_a_clean: OrthancProcess, tiny_dicom: DicomFactory) -> None:
    paths, study, _ = tiny_dicom(2)
    ids = orthanc_a_clean.upload(paths)
    assert len(ids) == 2 and len(set(ids)) == 2
    assert orthanc_a_clean.instance_count() == 2
    # Uploading the same files again overwrites (OverwriteInstances) instead of duplicating.
    assert orthanc_a_clean.upload(paths) == ids
    assert orthanc_a_clean.instance_count() == 2
    studies = httpx.get(
        f"{orthanc_a_clean.dicomweb_url}/studies", params={"StudyInstanceUID": study}, trust_env=False
    ).json()
    assert len(studies) == 1


def test_add_modality_then_reset_restores(orthanc_a_clean: OrthancProcess) -> None:
    orthanc_a_clean.add_modality("extra", "EXTRA", "127.0.0.5", 10400)
    modalities = orthanc_a_clean.client.get("/modalities", params={"expand": ""}).json()
    assert modalities["extra"]["AET"] == "EXTRA"
    assert modalities["extra"]["Port"] == 10400
    orthanc_a_clean.reset()
    assert sorted(orthanc_a_clean.client.get("/modalities").json()) == ["dcmtk", "drimbox"]


def test_c_move_to_added_modality(orthanc_a_clean: OrthancProcess, tiny_dicom: DicomFactory, tmp_path: Path) -> None:
    # A destination known only at runtime receives the study: C-MOVE destinations can be added.
    paths, study, _ = tiny_dicom(2)
    orthanc_a_clean.upload(paths)
    port = free_port()
    orthanc_a_clean.add_modality("runtime", "RUNTIME", "127.0.0.1", port)
    out = tmp_path / "received"
    out.mkdir()
    scp = subprocess.Popen(
        [dcmtk_tool("storescp"), "-aet", "RUNTIME", "-od", str(out), str(port)],
        env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 5)
        result = subprocess.run(
            [dcmtk_tool("movescu"), "-S", "-aet", "DCMTK", "-aec", orthanc_a_clean.aet, "-aem", "RUNTIME",
             "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
             "127.0.0.1", str(orthanc_a_clean.dicom_port)],
            env=dcmtk_env(), capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert len(list(out.iterdir())) == 2
    finally:
        scp.terminate()
        scp.wait(5)


def test_echoscu(orthanc_a: OrthancProcess, orthanc_b: OrthancProcess) -> None:
    for orthanc in (orthanc_a, orthanc_b):
        result = _echo(orthanc.aet, orthanc.dicom_port)
        assert result.returncode == 0, result.stderr


def test_called_aet_is_checked(orthanc_a: OrthancProcess) -> None:
    assert _echo("WRONG_AET", orthanc_a.dicom_port).returncode != 0


def test_undeclared_caller_cannot_query(orthanc_a_clean: OrthancProcess, node_ae: LocalAE) -> None:
    def find(calling: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [dcmtk_tool("findscu"), "-S", "-aet", calling, "-aec", orthanc_a_clean.aet,
             "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
             "127.0.0.1", str(orthanc_a_clean.dicom_port)],
            env=dcmtk_env(), capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip

    # findscu exits 0 even when the find failed: judge by its error lines.
    accepted = find(node_ae.aet)
    assert accepted.returncode == 0 and "E:" not in accepted.stderr, accepted.stderr
    refused = find("STRANGER")
    assert "Find Failed" in refused.stderr or refused.returncode != 0


def test_remote_ae(orthanc_a: OrthancProcess) -> None:
    remote = orthanc_a.remote_ae(timeout_s=12)
    assert (remote.aet, remote.host, remote.port) == ("PACS_A", "127.0.0.1", orthanc_a.dicom_port)
    assert remote.timeout_s == 12 and remote.supports_c_get
    assert remote.rest_url == orthanc_a.http_url


def test_http_refuses_non_127_0_0_1_source(orthanc_a: OrthancProcess) -> None:
    # RemoteAccessAllowed=false means "client address is exactly 127.0.0.1", not "any loopback".
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, trust_env=False) as client:
        assert client.get(f"http://127.0.0.1:{orthanc_a.http_port}/system").status_code == 401
    assert httpx.get(f"http://127.0.0.2:{orthanc_a.http_port}/system", trust_env=False).status_code == 200
