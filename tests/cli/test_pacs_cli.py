"""`drimbox pacs echo|find|get|store` as a user runs them, against a real Orthanc."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import tomli_w

from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port
from drimbox.testdata import GeneratedStudy, make_patient, write_mammography_study

CLI_AET = "CLITEST"
CLI_HOST = "127.0.0.5"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    """A small 4-view screening mammography study on disk."""
    return write_mammography_study(tmp_path_factory.mktemp("mg"), make_patient(11), size="small", seed=11)


@pytest.fixture()
def config(tmp_path: Path, orthanc_a_clean: OrthancProcess) -> Path:
    """A node settings file for the CLI, whose AE the PACS knows as a C-MOVE destination."""
    port = free_port(CLI_HOST)
    orthanc_a_clean.add_modality("cli", CLI_AET, CLI_HOST, port)
    remote = orthanc_a_clean.remote_ae()
    settings = {
        "name": "cli-test",
        "local": {"aet": CLI_AET, "host": CLI_HOST, "port": port},
        "pacs": {"aet": remote.aet, "host": remote.host, "port": remote.port},
        "storage": {"data_dir": str(tmp_path / "data")},
        "auth": {"dev_mode": True},
    }
    path = tmp_path / "node.toml"
    path.write_text(tomli_w.dumps(settings))
    return path


def _drimbox(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drimbox", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_echo(config: Path) -> None:
    result = _drimbox("pacs", "echo", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout


def test_store_find_and_get(config: Path, study: GeneratedStudy, tmp_path: Path) -> None:
    stored = _drimbox("pacs", "store", "--config", config, study.files[0].parent)
    assert stored.returncode == 0, stored.stderr

    found = _drimbox("pacs", "find", "--config", config, "--json", "-k", f"AccessionNumber={study.accession_number}")
    assert found.returncode == 0, found.stderr
    matches = [json.loads(block) for block in _json_blocks(found.stdout)]
    assert [m["0020000D"]["Value"][0] for m in matches] == [study.study_instance_uid]

    for method in ((), ("--move",)):
        dest = tmp_path / ("move" if method else "get")
        got = _drimbox("pacs", "get", "--config", config, study.study_instance_uid, "--dest", dest, *method)
        assert got.returncode == 0, got.stderr
        received = sorted(dest.rglob("*.dcm"))
        assert len(received) == len(study.files)
        by_uid = {pydicom.dcmread(p).SOPInstanceUID: p for p in study.files}
        for path in received:
            ds = pydicom.dcmread(path)
            assert ds.PixelData == pydicom.dcmread(by_uid[ds.SOPInstanceUID]).PixelData


def test_unreachable_pacs_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(tomli_w.dumps({"pacs": {"aet": "NOBODY", "host": "127.0.0.1", "port": free_port(),
                                            "timeout_s": 2}, "auth": {"dev_mode": True}}))
    result = _drimbox("pacs", "echo", "--config", path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def _json_blocks(text: str) -> list[str]:
    """Split rich's pretty-printed JSON objects (one per match) apart."""
    blocks, depth, current = [], 0, []
    for line in text.splitlines():
        current.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and current and "".join(current).strip():
            blocks.append("\n".join(current))
            current = []
    return blocks
