"""The devnet's dcmqrscp: life cycle, loading, and the strict hierarchical query model."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import RLELossless

from drimbox.config import LocalAE
from drimbox.devnet.dcmqrscp import DcmqrscpProcess
from drimbox.devnet.dcmtk import dcmtk_env, dcmtk_tool
from drimbox.devnet.errors import DevnetError
from drimbox.devnet.ports import wait_for_port

DicomFactory = Callable[..., tuple[list[Path], str, str]]
"""The ``tiny_dicom`` fixture: count -> (paths, study UID, series UID)."""


def _group_gone(pgid: int, timeout: float = 5.0) -> bool:
    # Children forked per association are reaped by init once the parent is gone; give it a moment.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _find(archive: DcmqrscpProcess, *keys: str, calling: str = "DCMTK") -> subprocess.CompletedProcess[str]:
    argv = [dcmtk_tool("findscu"), "-v", "-S", "-aet", calling, "-aec", archive.aet]
    for key in keys:
        argv += ["-k", key]
    argv += ["127.0.0.1", str(archive.dicom_port)]
    return subprocess.run(argv, env=dcmtk_env(), capture_output=True, text=True, timeout=30, check=False)


def _answers(result: subprocess.CompletedProcess[str]) -> int:
    return result.stderr.count("Find Response:")


def test_start_ready_stop_leaves_nothing(tmp_path: Path, tiny_dicom: DicomFactory) -> None:
    started = time.monotonic()
    archive = DcmqrscpProcess(tmp_path / "q", aet="LIFECYCLE").start()
    assert time.monotonic() - started < 5
    pid = archive.pid
    assert pid is not None
    try:
        paths, study, _ = tiny_dicom(1)
        archive.load(paths)
        assert _answers(_find(archive, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")) == 1
    finally:
        archive.stop()
    assert archive.pid is None
    assert _group_gone(pid), "a dcmqrscp process (or a forked association child) survived stop()"
    assert not archive.echo(timeout=1)


def test_wrong_called_aet_is_rejected(dcmqrscp: DcmqrscpProcess) -> None:
    assert dcmqrscp.echo()
    result = subprocess.run(
        [dcmtk_tool("echoscu"), "-aec", "NOT_THE_ARCHIVE", "127.0.0.1", str(dcmqrscp.dicom_port)],
        env=dcmtk_env(), capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr


def test_load_then_study_find(dcmqrscp_clean: DcmqrscpProcess, tiny_dicom: DicomFactory) -> None:
    paths, study, _ = tiny_dicom(3, patient_name="DUPONT^MARIE")
    started = time.monotonic()
    assert dcmqrscp_clean.load(paths) == 3
    assert time.monotonic() - started < 2
    assert dcmqrscp_clean.instance_count() == 3
    result = _find(dcmqrscp_clean, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName")
    assert _answers(result) == 1, result.stderr
    assert study in result.stderr and "DUPONT^MARIE" in result.stderr


def test_image_query_without_series_uid_is_refused(dcmqrscp_clean: DcmqrscpProcess, tiny_dicom: DicomFactory) -> None:
    paths, study, series = tiny_dicom(2)
    dcmqrscp_clean.load(paths)
    # Non-hierarchical: IMAGE level with the study UID but no SeriesInstanceUID. Orthanc would
    # answer it; a strict archive fails it (0xA900: identifier does not match SOP class).
    refused = _find(dcmqrscp_clean, "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study}", "SOPInstanceUID")
    assert _answers(refused) == 0
    assert "DataSetDoesNotMatchSOPClass" in refused.stderr, refused.stderr  # status 0xA900
    # The same query, hierarchical, is answered.
    accepted = _find(
        dcmqrscp_clean,
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={study}",
        f"SeriesInstanceUID={series}",
        "SOPInstanceUID",
    )
    assert _answers(accepted) == 2, accepted.stderr


def test_reset_empties(dcmqrscp_clean: DcmqrscpProcess, tiny_dicom: DicomFactory) -> None:
    paths, _, _ = tiny_dicom(2)
    dcmqrscp_clean.load(paths)
    dcmqrscp_clean.reset()
    assert dcmqrscp_clean.instance_count() == 0
    assert _answers(_find(dcmqrscp_clean, "QueryRetrieveLevel=STUDY", "StudyInstanceUID")) == 0
    assert all(path.exists() for path in paths), "reset must not touch the caller's files"


def test_c_get_is_enabled(dcmqrscp_clean: DcmqrscpProcess, tiny_dicom: DicomFactory, tmp_path: Path) -> None:
    paths, study, _ = tiny_dicom(3)
    dcmqrscp_clean.load(paths)
    out = tmp_path / "got"
    out.mkdir()
    result = subprocess.run(
        [dcmtk_tool("getscu"), "-S", "-aet", "DCMTK", "-aec", dcmqrscp_clean.aet, "-od", str(out),
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
         "127.0.0.1", str(dcmqrscp_clean.dicom_port)],
        env=dcmtk_env(), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list(out.iterdir())) == 3


def test_c_move_to_declared_destination_only(
    dcmqrscp_clean: DcmqrscpProcess, dcmtk_peer_ae: LocalAE, tiny_dicom: DicomFactory, tmp_path: Path
) -> None:
    paths, study, _ = tiny_dicom(2)
    dcmqrscp_clean.load(paths)
    out = tmp_path / "moved"
    out.mkdir()
    scp = subprocess.Popen(
        [dcmtk_tool("storescp"), "-aet", dcmtk_peer_ae.aet, "-od", str(out), str(dcmtk_peer_ae.port)],
        env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(dcmtk_peer_ae.host, dcmtk_peer_ae.port, 5)

        def move(destination: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [dcmtk_tool("movescu"), "-S", "-aet", "DCMTK", "-aec", dcmqrscp_clean.aet, "-aem", destination,
                 "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                 "127.0.0.1", str(dcmqrscp_clean.dicom_port)],
                env=dcmtk_env(), capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip

        moved = move(dcmtk_peer_ae.aet)
        assert moved.returncode == 0, moved.stderr
        assert len(list(out.iterdir())) == 2
        unknown = move("NOBODY")
        assert "MoveDestinationUnknown" in unknown.stderr
    finally:
        scp.terminate()
        scp.wait(5)


def test_compressed_files_are_refused_at_load(dcmqrscp_clean: DcmqrscpProcess, tiny_dicom: DicomFactory) -> None:
    (path,), _, _ = tiny_dicom(1)
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(path)
    with pytest.raises(DevnetError, match="no codecs"):
        dcmqrscp_clean.load([path])
    assert dcmqrscp_clean.instance_count() == 0


def test_remote_ae(dcmqrscp: DcmqrscpProcess) -> None:
    remote = dcmqrscp.remote_ae(timeout_s=5)
    assert (remote.aet, remote.host, remote.port) == ("DCMQRSCP", "127.0.0.1", dcmqrscp.dicom_port)
    assert remote.supports_c_get and remote.rest_url is None
