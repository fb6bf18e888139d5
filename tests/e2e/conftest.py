"""One running demo network (registry + two sites, real Orthanc PACS and real nodes) for the
consumer-side end-to-end tests, started once per test session with small sample studies, and the
sample studies published by site A to the registry before any test runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from drimbox.config import NodeSettings, load_settings
from drimbox.devnet.network import DemoNetwork
from drimbox.devnet.samples import load_demo_samples
from drimbox.testdata import make_patient
from drimbox.testdata.identity import Patient
from drimbox.trust import mint_token

_PUBLISHED_KOS = 3  # screening MG, prior MG, CT (the MR's patient has no INS: not published)


@dataclass
class Net:
    """The running demo network and helpers to act in it."""

    network: DemoNetwork
    endpoints: dict[str, Any]
    workdir: Path

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.endpoints["nodes"] if n["name"] == name)

    def settings(self, name: str, **overrides: Any) -> NodeSettings:
        """The settings site ``name``'s node runs with, with ``overrides`` (e.g. another data_dir)."""
        return load_settings(Path(self.node(name)["config"]), **overrides)

    def token(self, *, rpps: str = "10101010101", role: str = "radiologist", ttl_s: int = 3600,
              client: str = "site-b", kind: str = "practitioner") -> str:
        """A bearer token accepted by every node's site face and the registry, issued to OIDC ``client``.

        On a network face a token is accepted only from the node its client belongs to (DESIGN §2b):
        the default, ``site-b``, is what site B's users get, forwarded by site B to site A; the test
        tool (endpoints.json ``tls``, address 127.0.0.1) presents tokens of client ``tool``.
        """
        idp = json.loads((self.workdir / "idp.json").read_text())
        key = serialization.load_pem_private_key(Path(idp["signing_key"]).read_bytes(), password=None)
        return mint_token(key, issuer=idp["issuer"], audience=idp["audience"], subject=f"rpps:{rpps}", rpps=rpps,
                          role=role, name="Dr Test Radiologue", ttl_s=ttl_s, client_id=client,
                          kind=kind)  # type: ignore[arg-type]

    @property
    def screened_patient(self) -> Patient:
        """The patient of the current and prior screening mammography (published by site A)."""
        return make_patient(1, sex="F", with_ins=True)

    @property
    def ct_patient(self) -> Patient:
        return make_patient(2, sex="M", with_ins=True)


def _wait_published(endpoints: dict[str, Any], token: str, patients: list[Patient], expected: int) -> None:
    url = f"{endpoints['registry']['fhir']}/DocumentReference"
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
        while True:
            found = 0
            for patient in patients:
                bundle = client.get(url, params={"patient.identifier": f"urn:oid:{patient.ins_oid}|{patient.ins}"})
                bundle.raise_for_status()
                found += sum(1 for e in bundle.json().get("entry", [])
                             if e["resource"]["content"][0]["attachment"]["contentType"] == "application/dicom"
                             and e["resource"].get("status") == "current")
            if found >= expected:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"only {found} of {expected} KOS published within 120 s")
            time.sleep(0.5)


@pytest.fixture(scope="session")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    workdir = tmp_path_factory.mktemp("demo-net")
    network = DemoNetwork(workdir)
    endpoints = network.start()
    try:
        for _ in load_demo_samples(network, full_size=False):
            pass
        result = Net(network, endpoints, workdir)
        _wait_published(endpoints, result.token(), [result.screened_patient, result.ct_patient], _PUBLISHED_KOS)
        yield result
    finally:
        network.stop()
