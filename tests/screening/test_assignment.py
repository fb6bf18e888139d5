"""Assignment at the programme: round-robin that never picks the exam's L1 reader, refusals, and the
message sent to the reader's node (over an ``httpx.MockTransport``; registry and IdP as in-memory
implementations of their protocols)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from drimbox.config import NodeSettings
from drimbox.errors import Forbidden
from drimbox.retrieve.model import Actor, Exam, InstanceRef, PatientRecord, PatientTraits, RelatedDocument, SeriesRef
from drimbox.screening.api import network_router, site_router
from drimbox.screening.errors import AssignmentRefused
from drimbox.screening.messages import NodeMessenger
from drimbox.screening.model import Assignment, PatientRef
from drimbox.screening.service import NodeParts, ScreeningService
from drimbox.screening.store import ScreeningStore
from drimbox.trust.audit import AuditStore
from drimbox.trust.grants import KosGrants
from drimbox.trust.node_credential import NodeCredential
from drimbox.trust.peers import HostListPolicy
from drimbox.trust.principal import Principal
from tests.screening.conftest import reading

_OWN = "https://crcdc.test:8443"
_READERS = [("10101010101", "https://site-a.test:8443"), ("20202020202", "https://site-b.test:8443"),
            ("30303030303", "https://site-c.test:8443")]
_PATIENT = PatientRef(ins="255069912345678", family_name="MARTIN", given_name="Anne", birth_date=date(1960, 5, 1))


def _exam(kos: str, study: str, when: datetime) -> Exam:
    series = SeriesRef(series_uid=f"{study}.1", retrieve_url=f"https://site-a.test:8443/dicom-web/studies/{study}"
                                                             f"/series/{study}.1",
                       instances=(InstanceRef("1.2.840.10008.5.1.4.1.1.1.2", f"{study}.1.1"),))
    return Exam(kos_uid=kos, entry_uuid="", repository_unique_id="", study_uid=study, accession_number=None,
                performed=when, modalities=("MG",), description="", body_part="", source_site="A", series=(series,))


class _Registry:
    """The registry as an in-memory ExamDirectory: one current exam and one prior."""

    def __init__(self) -> None:
        now = datetime(2026, 12, 1, tzinfo=UTC)
        self.exams = (_exam("1.9.1", "1.8.1", now), _exam("1.9.2", "1.8.2", now - timedelta(days=700)))

    def patient_record(self, traits: PatientTraits, actor: Actor) -> PatientRecord:
        return PatientRecord(traits=traits, exams=self.exams)

    def document(self, document: RelatedDocument, actor: Actor) -> bytes:
        raise AssertionError("not used")

    def is_deprecated(self, kos_uid: str, actor: Actor | None = None) -> bool:
        return False


class _Idp:
    def client_credentials(self, scope: str) -> tuple[str, datetime]:
        return "node-token", datetime.now(UTC) + timedelta(hours=1)


@pytest.fixture
def programme(tmp_path: Path) -> tuple[ScreeningService, list[httpx.Request]]:
    """A programme node with three readers; the messages it sends are kept."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202, json={})

    settings = NodeSettings(pacs={"aet": "PACS", "host": "127.0.0.1", "port": 104},  # type: ignore[arg-type]
                            http={"public_network_url": _OWN},  # type: ignore[arg-type]
                            screening={"enabled": True, "programme": True,  # type: ignore[arg-type]
                                       "readers": [{"rpps": r, "node": n} for r, n in _READERS]})
    audit = AuditStore(tmp_path / "audit.sqlite")
    messenger = NodeMessenger(httpx.Client(transport=httpx.MockTransport(answer)),
                              HostListPolicy(["site-a.test", "site-b.test", "site-c.test"]))
    parts = NodeParts(directory=_Registry(), remote_store=None, remote_studies=None, site_store=None,
                      messenger=messenger, audit=audit, node_credential=NodeCredential(_Idp(), "crcdc"))
    return ScreeningService(settings, ScreeningStore(None), parts), sent


def _request(service: ScreeningService, l1_rpps: str) -> str:
    return service.store.add_request(study_uid="1.8.1", kos_uid="1.9.1", patient=_PATIENT.model_dump(mode="json"),
                                     l1=reading(l1_rpps).model_dump(mode="json"), single_breast=None,
                                     priority="routine", l1_site_url="https://site-a.test:8443").id


def test_round_robin_skips_the_l1_reader_and_sends_the_case_with_its_prior(
        programme: tuple[ScreeningService, list[httpx.Request]]) -> None:
    service, sent = programme
    coordinator = Principal(subject="rpps:99999999999", kind="practitioner", issuer="idp", rpps="99999999999")
    picked = [service.assign(_request(service, "10101010101"), None, coordinator, "user-token").reader_rpps
              for _ in range(4)]
    assert picked == ["20202020202", "30303030303", "20202020202", "30303030303"]
    # The rotation wraps around; an exam read first by 20202020202 skips them when their turn comes.
    picked = [service.assign(_request(service, "20202020202"), None, coordinator, "user-token").reader_rpps
              for _ in range(2)]
    assert picked == ["10101010101", "30303030303"]
    # The exams are site A's: the programme asks site A to grant them to the reader's node, then assigns.
    grants = [json.loads(r.content) for r in sent[:2]]
    assert all(str(r.url) == "https://site-a.test:8443/screening/grants" for r in sent[:2])
    assert [(g["kos_uid"], g["reader_node"]) for g in grants] == [("1.9.1", "https://site-b.test:8443"),
                                                                    ("1.9.2", "https://site-b.test:8443")]
    first = sent[2]
    assert str(first.url) == "https://site-b.test:8443/screening/assignments"
    assert first.headers["authorization"] == "Bearer node-token"  # the programme node's own credential
    message = json.loads(first.content)
    assert message["priors"] == [{"study_uid": "1.8.2", "kos_uid": "1.9.2"}]
    assert message["programme_url"] == _OWN and message["l1"]["reader_rpps"] == "10101010101"


def test_refusals(programme: tuple[ScreeningService, list[httpx.Request]]) -> None:
    service, sent = programme
    coordinator = Principal(subject="c", kind="practitioner", issuer="idp", rpps="99999999999")
    request_id = _request(service, "10101010101")
    with pytest.raises(AssignmentRefused, match="RPPS 10101010101 is the L1 reader of this exam"):
        service.assign(request_id, "10101010101", coordinator, "t")
    with pytest.raises(AssignmentRefused, match="not a second reader of this programme"):
        service.assign(request_id, "40404040404", coordinator, "t")
    assert sent == [] and service.request(request_id).status == "requested"


def test_a_source_grants_a_reader_node_at_the_programmes_request(tmp_path: Path) -> None:
    settings = NodeSettings(pacs={"aet": "PACS", "host": "127.0.0.1", "port": 104},  # type: ignore[arg-type]
                            screening={"enabled": True, "programme_url": _OWN})  # type: ignore[arg-type]
    audit = AuditStore(tmp_path / "audit.sqlite")
    grants = KosGrants(tmp_path / "grants.sqlite", audit)
    parts = NodeParts(directory=None, remote_store=None, remote_studies=None, site_store=None, messenger=None,
                      audit=audit, grants=grants, published=lambda kos: "1.8.1" if kos == "1.9.1" else None)
    source = ScreeningService(settings, ScreeningStore(None), parts)
    programme_node = Principal(subject="crcdc", kind="node", issuer="idp", node="crcdc.test")
    source.grant_for_programme("1.9.1", "https://site-b.test:8443", "req-1", programme_node)
    granted = grants.find("1.9.1", "site-b.test")
    assert granted is not None and granted.purpose == "screening-second-read"
    with pytest.raises(Forbidden, match="not a current manifest published by this node"):
        source.grant_for_programme("1.9.7", "https://site-b.test:8443", "req-1", programme_node)
    other = Principal(subject="site-c", kind="node", issuer="idp", node="site-c.test")
    with pytest.raises(Forbidden, match="comes only from the node at https://crcdc.test:8443"):
        source.grant_for_programme("1.9.1", "https://site-c.test:8443", "req-1", other)
    user = Principal(subject="rpps:1", kind="practitioner", issuer="idp", rpps="10101010101", node="crcdc.test")
    with pytest.raises(Forbidden):
        source.grant_for_programme("1.9.1", "https://site-b.test:8443", "req-1", user)
    assert grants.find("1.9.1", "site-c.test") is None


def test_openapi_documents_the_screening_routes(programme: tuple[ScreeningService, list[httpx.Request]]) -> None:
    service, _ = programme
    app = FastAPI()
    app.include_router(site_router(service))
    app.include_router(network_router(service))
    paths = app.openapi()["paths"]
    assert {"/api/screening/requests", "/api/screening/requests/{request_id}/assign", "/api/screening/worklist",
            "/api/screening/cases/{case_id}/reading", "/api/screening/dashboard", "/api/screening/dashboard.csv",
            "/screening/assignments", "/screening/results", "/screening/grants"} <= set(paths)
    assert "application/dicom" in paths["/screening/results"]["post"]["requestBody"]["content"]


def test_a_reader_node_takes_assignments_only_from_its_programme_node(tmp_path: Path) -> None:
    settings = NodeSettings(pacs={"aet": "PACS", "host": "127.0.0.1", "port": 104},  # type: ignore[arg-type]
                            screening={"enabled": True, "programme_url": _OWN})  # type: ignore[arg-type]
    parts = NodeParts(directory=None, remote_store=None, remote_studies=None, site_store=None, messenger=None,
                      audit=AuditStore(tmp_path / "audit.sqlite"))
    started: list[object] = []
    reader_node = ScreeningService(settings, ScreeningStore(None), parts, background=started.append)
    assignment = Assignment(request_id="req-1", study_uid="1.8.1", kos_uid="1.9.1", patient=_PATIENT,
                            reader_rpps="20202020202", l1=reading("10101010101"),
                            requested_at=datetime(2026, 12, 1, tzinfo=UTC), programme_url=_OWN,
                            l1_site_url="https://site-a.test:8443")
    for wrong in (Principal(subject="rpps:1", kind="practitioner", issuer="idp", rpps="10101010101",
                            node="crcdc.test"),
                  Principal(subject="site-c", kind="node", issuer="idp", node="site-c.test")):
        with pytest.raises(Forbidden, match="an assignment comes only from the node at"):
            reader_node.receive_assignment(assignment, wrong)
    assert reader_node.store.cases() == [] and started == []
    case = reader_node.receive_assignment(assignment, Principal(subject="crcdc", kind="node", issuer="idp",
                                                                node="crcdc.test"))
    assert case.status == "waiting" and len(started) == 1  # its prefetch queued
    again = reader_node.receive_assignment(assignment, Principal(subject="crcdc", kind="node", issuer="idp",
                                                                 node="crcdc.test"))
    assert again.id == case.id and len(reader_node.store.cases()) == 1
