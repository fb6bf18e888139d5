"""`drimbox demo` end to end: the contract file, every service answering, tokens, mutual TLS, and a
Ctrl-C that leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drimbox.devnet.dcmtk import dcmtk_tool
from drimbox.testdata import make_patient

CONTRACT_NODE_KEYS = {"name", "base_url", "dicomweb", "network_dicomweb", "viewer", "dimse", "hl7", "config", "pacs"}


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], Path, dict[str, Any]]]:
    """A running `drimbox demo` (small sample images) and its endpoints.json."""
    workdir = tmp_path_factory.mktemp("demo")
    proc = subprocess.Popen(
        [sys.executable, "-m", "drimbox", "demo", "--workdir", str(workdir), "--no-full-size"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    endpoints_file = workdir / "endpoints.json"
    try:
        deadline = time.monotonic() + 90
        while not endpoints_file.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "demo did not write endpoints.json in time"
            time.sleep(0.2)
        # endpoints.json is written before the samples load; the ready line marks the end of start-up.
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ready: "):
                break
        else:
            pytest.fail("the demo stopped before it was ready")
    except BaseException:
        # A failed start must not leave a network running: Ctrl-C stops every child.
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        raise
    yield proc, workdir, json.loads(endpoints_file.read_text())
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_contract_shape(demo: tuple[subprocess.Popen[str], Path, dict[str, Any]]) -> None:
    _, workdir, endpoints = demo
    assert set(endpoints) == {"registry", "nodes", "tls", "token_command"}
    assert set(endpoints["registry"]) == {"base_url", "xds_registry", "xds_repository", "fhir", "whitelist"}
    assert [n["name"] for n in endpoints["nodes"]] == ["site-a", "site-b"]
    for node in endpoints["nodes"]:
        assert set(node) == CONTRACT_NODE_KEYS
        assert set(node["dimse"]) == {"aet", "host", "port"}
        assert set(node["hl7"]) == {"host", "port"}
        assert set(node["pacs"]) == {"aet", "host", "port", "rest"}
        assert Path(node["config"]).is_file()
        assert node["network_dicomweb"].startswith("https://")
    assert {n["dimse"]["host"] for n in endpoints["nodes"]} == {"127.0.0.2", "127.0.0.3"}
    assert set(endpoints["tls"]) == {"ca", "client_cert", "client_key"}
    assert all(Path(p).is_file() for p in endpoints["tls"].values())
    assert endpoints["token_command"][-3:] == ["dev-token", "--workdir", str(workdir)]


def _token(endpoints: dict[str, Any]) -> str:
    result = subprocess.run(endpoints["token_command"], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip()


def test_services_answer_and_require_tokens(demo: tuple[subprocess.Popen[str], Path, dict[str, Any]]) -> None:
    _, _, endpoints = demo
    token = _token(endpoints)
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{endpoints['registry']['base_url']}/healthz").status_code == 200
        for node in endpoints["nodes"]:
            base = node["base_url"]
            assert client.get(f"{base}/healthz").json()["node"] == node["name"]
            assert client.get(f"{base}/api/whoami").status_code == 401
            bad = client.get(f"{base}/api/whoami", headers={"Authorization": "Bearer x.y.z"})
            assert bad.status_code == 401
            whoami = client.get(f"{base}/api/whoami", headers={"Authorization": f"Bearer {token}"})
            assert whoami.status_code == 200
            assert whoami.json()["rpps"] == "10101010101"
            echo = client.post(f"{base}/api/pacs/echo", headers={"Authorization": f"Bearer {token}"})
            assert echo.json()["status"] == "ok"


def test_registry_publishes_the_screening_studies(demo: tuple[subprocess.Popen[str], Path, dict[str, Any]]) -> None:
    _, _, endpoints = demo
    screened = make_patient(1, sex="F", with_ins=True)  # the demo's screening patient (drimbox.devnet.samples)
    query = {"patient.identifier": f"urn:oid:{screened.ins_oid}|{screened.ins}"}
    url = f"{endpoints['registry']['fhir']}/DocumentReference"
    with httpx.Client(timeout=10) as client:
        assert client.get(url, params=query).status_code == 401
        headers = {"Authorization": f"Bearer {_token(endpoints)}"}
        deadline = time.monotonic() + 60  # publication is asynchronous (outbox worker)
        while True:
            bundle = client.get(url, params=query, headers=headers)
            assert bundle.status_code == 200, bundle.text
            resources = [e["resource"] for e in bundle.json().get("entry", [])]
            # Each KOS comes with its IHE DSG signature document (text/xml).
            kos = [r for r in resources if r["content"][0]["attachment"]["contentType"] == "application/dicom"]
            if len(kos) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(kos) == 2  # current and prior mammography
        attachment = kos[0]["content"][0]["attachment"]
        document = client.get(attachment["url"], headers=headers)
    assert document.status_code == 200
    assert document.content[128:132] == b"DICM"


def test_network_face_requires_a_client_certificate(
    demo: tuple[subprocess.Popen[str], Path, dict[str, Any]],
) -> None:
    _, _, endpoints = demo
    tls = endpoints["tls"]
    node = endpoints["nodes"][0]
    url = node["network_dicomweb"].removesuffix("/dicom-web") + "/healthz"
    with_cert = ssl.create_default_context(cafile=tls["ca"])
    with_cert.load_cert_chain(tls["client_cert"], tls["client_key"])
    with httpx.Client(verify=with_cert, timeout=10) as client:
        assert client.get(url).status_code == 200
    without_cert = ssl.create_default_context(cafile=tls["ca"])
    with httpx.Client(verify=without_cert, timeout=10) as client, pytest.raises(httpx.TransportError):
        client.get(url).raise_for_status()


def test_node_scp_answers_dcmtk_echo(demo: tuple[subprocess.Popen[str], Path, dict[str, Any]]) -> None:
    _, _, endpoints = demo
    for node in endpoints["nodes"]:
        dimse = node["dimse"]
        argv = [dcmtk_tool("echoscu"), "-aet", "ECHOTEST", "-aec", dimse["aet"], dimse["host"], str(dimse["port"])]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


def test_samples_loaded_into_site_a(demo: tuple[subprocess.Popen[str], Path, dict[str, Any]]) -> None:
    _, _, endpoints = demo
    site_a, site_b = endpoints["nodes"]
    with httpx.Client(timeout=10) as client:
        studies_a = client.get(f"{site_a['pacs']['rest']}/studies").json()
        studies_b = client.get(f"{site_b['pacs']['rest']}/studies").json()
    assert len(studies_a) >= 3  # mammography, CT, MR
    assert studies_b == []


def test_ctrl_c_leaves_no_process(demo: tuple[subprocess.Popen[str], Path, dict[str, Any]]) -> None:
    proc, workdir, _ = demo
    assert _processes_mentioning(str(workdir)), "the demo's children should be running"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(workdir)) == []
