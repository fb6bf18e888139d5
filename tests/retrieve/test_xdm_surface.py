"""XDM on the node's surfaces: ``drimbox xdm export/import`` as a subprocess, and the site-face router
(streamed export of a retrieved exam, upload limit, refused archives as 400 with every problem).

The router's importer here is a small directory importer (a real implementation of the importer's
interface that copies files): the PACS import itself is the importer's business, tested with Orthanc
in ``test_xdm_orthanc.py``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from fastapi import FastAPI
from fastapi.testclient import TestClient

from drimbox.http_errors import install_error_handlers
from drimbox.retrieve.model import PatientTraits
from drimbox.retrieve.xdm import SUBSET, XdmOrigin
from drimbox.retrieve.xdm_api import xdm_router
from drimbox.testdata import INS_NIR_TEST_OID, GeneratedStudy, make_patient, write_mammography_study
from drimbox.trust import include_protected
from drimbox.trust.audit import AuditEvent


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    return write_mammography_study(tmp_path_factory.mktemp("mg"), make_patient(52), size="small")


def _drimbox(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drimbox", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    settings = {"name": "xdm-test", "pacs": {"aet": "NOWHERE", "host": "127.0.0.1", "port": 1},
                "storage": {"data_dir": str(tmp_path / "data")}, "auth": {"dev_mode": True},
                "publish": {"organisation_name": "CH Démo", "organisation_id": "1123456789"}}
    path = tmp_path / "node.toml"
    path.write_text(tomli_w.dumps(settings))
    return path


def test_cli_export_then_check(config: Path, study: GeneratedStudy, tmp_path: Path) -> None:
    out = tmp_path / "exam.zip"
    report = tmp_path / "cr.pdf"
    report.write_bytes(b"%PDF-1.4\n%%EOF\n")
    result = _drimbox("xdm", "export", "--config", config, "--dir", study.instances[0].path.parent, "--out", out,
                      "--report", report, "--contact", "imagerie@ch-demo.example")
    assert result.returncode == 0, result.stderr
    assert "4 instances" in result.stdout
    with zipfile.ZipFile(out) as zf:
        assert f"{SUBSET}/DOC00002.PDF" in zf.namelist()
        assert "imagerie@ch-demo.example" in zf.read("README.TXT").decode()
    checked = _drimbox("xdm", "import", "--config", config, out, "--check")
    assert checked.returncode == 0, checked.stderr
    assert "4 instances" in checked.stdout and "application/pdf" in checked.stdout


def test_cli_import_refuses_with_every_problem(config: Path, tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(hostile, "w") as zf:
        zf.writestr("../../escape.txt", b"x")
        zf.writestr("/etc/cron.d/evil", b"y")
    result = _drimbox("xdm", "import", "--config", config, hostile)
    assert result.returncode == 2
    assert "path traversal" in result.stderr and "absolute path" in result.stderr
    assert "missing IHE_XDM/<subset>/METADATA.XML" in result.stderr
    assert not (tmp_path / "escape.txt").exists()


# -- router ------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    stored: tuple[str, ...]
    committed: tuple[str, ...]


@dataclass
class DirectoryImporter:
    """Copies the files it is given (the importer's interface, without a PACS)."""

    target: Path
    calls: list[tuple[int, PatientTraits | None]] = field(default_factory=list)

    def import_study(self, files: Sequence[Path], traits: PatientTraits | None, progress: Any = None) -> _Outcome:
        self.target.mkdir(exist_ok=True)
        for path in files:
            shutil.copyfile(path, self.target / path.name)
        self.calls.append((len(files), traits))
        names = tuple(p.name for p in files)
        return _Outcome(names, names)


@dataclass
class MemoryAudit:
    events: list[AuditEvent] = field(default_factory=list)

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


@pytest.fixture()
def retrieved(tmp_path: Path, study: GeneratedStudy) -> tuple[Path, str]:
    """``<work_dir>/<kos_uid>/<series>/<sop>.dcm`` as the retriever leaves it."""
    kos_uid = "2.25.1234567890"
    work_dir = tmp_path / "retrieved"
    for instance in study.instances:
        target = work_dir / kos_uid / instance.series_instance_uid / f"{instance.sop_instance_uid}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(instance.path, target)
    (work_dir / kos_uid / instance.series_instance_uid / ".abc.part").write_bytes(b"in flight")
    return work_dir, kos_uid


def _client(work_dir: Path, tmp_path: Path, importer: DirectoryImporter | None, audit: MemoryAudit,
            max_upload_bytes: int = 50 * 1024**2) -> TestClient:
    app = FastAPI()
    app.state.token_verifier = None  # dev mode: the developer principal
    install_error_handlers(app)
    include_protected(app, xdm_router(origin=XdmOrigin("site-b", "1.2.3.4"), work_dir=work_dir, importer=importer,
                                      spool_dir=tmp_path / "spool", audit=audit, max_upload_bytes=max_upload_bytes))
    return TestClient(app)


def test_api_export_streams_then_import_round_trips(retrieved: tuple[Path, str], tmp_path: Path,
                                                    study: GeneratedStudy) -> None:
    work_dir, kos_uid = retrieved
    importer = DirectoryImporter(tmp_path / "pacs")
    audit = MemoryAudit()
    client = _client(work_dir, tmp_path, importer, audit)
    with client.stream("GET", "/api/xdm/export", params={"kos": kos_uid}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/zip"
        assert "attachment" in response.headers["content-disposition"]
        chunks = list(response.iter_bytes())
    archive = b"".join(chunks)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert len([n for n in zf.namelist() if "/DICOM/" in n]) == 4  # the .part file is not exported
    answer = client.post("/api/xdm/import", content=archive, headers={"content-type": "application/zip"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["instances"] == 4 and body["committed"] == 4
    assert body["patient_id"].endswith(f"&{INS_NIR_TEST_OID}&ISO^NH")
    copied = {p.read_bytes() for p in (tmp_path / "pacs").iterdir()}
    assert copied == {i.path.read_bytes() for i in study.instances}
    count, traits = importer.calls[0]
    assert count == 4 and traits is not None and traits.ins_oid == INS_NIR_TEST_OID
    assert [e.action for e in audit.events] == ["xdm.export", "xdm.import"]
    assert not any((tmp_path / "spool").iterdir())  # the upload and its extraction are gone


def test_api_refusals(retrieved: tuple[Path, str], tmp_path: Path) -> None:
    work_dir, _ = retrieved
    audit = MemoryAudit()
    client = _client(work_dir, tmp_path, DirectoryImporter(tmp_path / "pacs"), audit, max_upload_bytes=10_000)
    assert client.get("/api/xdm/export", params={"kos": "../etc"}).status_code == 400
    assert client.get("/api/xdm/export", params={"kos": "1.2.3.999"}).status_code == 404
    assert client.post("/api/xdm/import", content=bytes(20_000)).status_code == 413
    hostile = io.BytesIO()
    with zipfile.ZipFile(hostile, "w") as zf:
        zf.writestr("../x", b"x")
    answer = client.post("/api/xdm/import", content=hostile.getvalue())
    assert answer.status_code == 400
    problems = answer.json()["problems"]
    assert any("path traversal" in p for p in problems) and any("METADATA.XML" in p for p in problems)
    assert audit.events[-1].outcome == "refused"


def test_api_import_without_importer_is_503(retrieved: tuple[Path, str], tmp_path: Path) -> None:
    work_dir, _ = retrieved
    client = _client(work_dir, tmp_path, None, MemoryAudit())
    assert client.post("/api/xdm/import", content=b"PK").status_code == 503


