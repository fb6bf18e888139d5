"""F5/F6 pages against the running demo network: a contextual call at site B for patients whose
exams site A published, the study page built from the REAL registry (ITI-18/43 through
:class:`RegistryDirectory`), the report read from the registry, the view action, and the page
a registry outage gives. Users authenticate with the demo IdP's bearer tokens, verified for real."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from drimbox.errors import LoginRequired
from drimbox.http_errors import install_error_handlers
from drimbox.publish.outbox import Outbox
from drimbox.publish.service import outbox_path
from drimbox.retrieve.directory import RegistryDirectory
from drimbox.retrieve.model import Actor, Exam, PatientTraits
from drimbox.retrieve.viewing import RemoteStudies
from drimbox.testdata import make_patient
from drimbox.testdata.identity import Patient
from drimbox.trust import JwtVerifier
from drimbox.trust.audit import AuditStore
from drimbox.trust.principal import Principal
from drimbox.web import ContextualCalls, public_router, published_study_lookup, web_router
from tests.e2e.conftest import Net
from tests.e2e.exams import published_kos


@dataclass
class NoImports:
    started: list[Exam]

    def start_import(self, exam: Exam, traits: PatientTraits | None, actor: Actor) -> str:
        self.started.append(exam)
        return "job"

    def get(self, job_id: str) -> None:
        return None


def _bearer(verifier: JwtVerifier) -> Callable[[Request], Principal]:
    """The browser principal's bearer path: a verified token, else a login redirect back here."""

    def principal(request: Request) -> Principal:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            raise LoginRequired("login required", next_url=request.url.path)
        return verifier.verify(auth.removeprefix("Bearer ").strip())

    return principal


def _actor_of(request: Request, principal: Principal) -> Actor:
    return Actor(subject=principal.subject, rpps=principal.rpps, role=principal.role,
                 display_name=principal.display_name,
                 token=request.headers["authorization"].removeprefix("Bearer ").strip())


@dataclass
class SiteB:
    client: TestClient
    audit: AuditStore
    remote: RemoteStudies


def _site_b(net: Net, data_dir: Path, **overrides: object) -> Iterator[SiteB]:
    settings = net.settings("site-b", storage={"data_dir": str(data_dir)}, **overrides)
    audit = AuditStore(data_dir / "audit.sqlite")
    calls = ContextualCalls()
    remote = RemoteStudies()
    with RegistryDirectory.from_settings(settings, timeout_s=10) as directory:
        app = FastAPI()
        install_error_handlers(app)
        app.include_router(public_router(calls=calls, audit=audit, settings=settings))
        app.include_router(web_router(directory=directory, audit=audit, remote=remote, imports=NoImports([]),
                                      xdm=None, published_study=lambda kos: None, settings=settings, calls=calls,
                                      principal=_bearer(JwtVerifier.from_settings(settings.auth)),
                                      actor_of=_actor_of))
        with TestClient(app, follow_redirects=False) as client:
            yield SiteB(client, audit, remote)
    audit.close()


@pytest.fixture
def site_b(net: Net, tmp_path: Path) -> Iterator[SiteB]:
    yield from _site_b(net, tmp_path)


def _form(patient: Patient, **changes: str) -> dict[str, str]:
    assert patient.ins is not None
    born = patient.birth_date
    return {"Patient.identifier.value": patient.ins, "Patient.identifier.system": f"urn:oid:{patient.ins_oid}",
            "Patient.name.family": patient.family, "Patient.name.given": patient.given,
            "Patient.gender": patient.sex, "Patient.birthDate": f"{born[:4]}-{born[4:6]}-{born[6:]}",
            "Address.district": "75056", "InformationEtConsentement": "true", "PatientID": patient.ipp,
            "PatientIDIssuer": patient.ipp_issuer, **changes}


def _study_page(site: SiteB, net: Net, patient: Patient, **changes: str) -> tuple[str, str]:
    called = site.client.post("/contextual-call", data=_form(patient, **changes))
    assert called.status_code == 303, called.text
    location = called.headers["location"]
    assert site.client.get(location).status_code == 303  # no data before login
    page = site.client.get(location, headers={"Authorization": f"Bearer {net.token()}"})
    assert page.status_code == 200, page.text
    return location, page.text


def test_study_page_lists_site_a_exams_newest_first(net: Net, site_b: SiteB) -> None:
    patient = net.screened_patient
    location, page = _study_page(site_b, net, patient)
    assert patient.ins is not None
    assert patient.family in page and patient.given in page and patient.ins in page
    kos_uids = re.findall(r'data-kos="([^"]+)"', page)
    assert len(kos_uids) == 2  # the current and the prior screening mammography
    assert page.count("Le plus récent") == 1 and page.count("Antérieur") == 1
    dates = re.findall(r'<dt>Date</dt><dd>(\d\d)/(\d\d)/(\d{4}) (\d\d:\d\d)</dd>', page)
    assert len(dates) == 2 and sorted(dates, key=lambda d: (d[2], d[1], d[0], d[3]), reverse=True) == dates
    assert page.count("<dd>MG</dd>") == 2
    assert "masqué" not in page
    [event] = site_b.audit.events(action="portal.patient")
    assert (event.outcome, event.patient_ins, event.subject) == ("success", patient.ins, "rpps:10101010101")
    token = {"Authorization": f"Bearer {net.token()}"}
    # the report published with the exam, read from the registry (the demo's CDA carries a PDF)
    report = site_b.client.get(f"{location}/exams/{kos_uids[0]}/report", headers=token)
    assert report.status_code == 200, report.text
    if report.headers["content-type"].startswith("text/html"):
        pdf = site_b.client.get(f"{location}/exams/{kos_uids[0]}/report?attachment=true", headers=token)
        assert pdf.content.startswith(b"%PDF")
    else:
        assert report.content.startswith(b"%PDF")
    # view: the study is opened for the site's viewer, OHIF with the mammography hanging protocol
    view = site_b.client.get(f"{location}/exams/{kos_uids[0]}/view", headers=token)
    assert view.status_code == 303
    study = re.fullmatch(r"/viewer\?StudyInstanceUIDs=([0-9.]+)&hangingProtocolId=@ohif/hpMammo",
                         view.headers["location"])
    assert study is not None and site_b.remote.get(study.group(1)) is not None
    assert site_b.remote.patient_id(study.group(1)) == patient.ins


def test_ct_patient_in_english(net: Net, site_b: SiteB) -> None:
    called = site_b.client.post("/contextual-call?lang=en", data=_form(net.ct_patient))
    page = site_b.client.get(called.headers["location"], headers={"Authorization": f"Bearer {net.token()}"})
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert "1 exam(s), newest first" in page.text and "<dd>CT</dd>" in page.text


def test_patient_without_published_exams(net: Net, site_b: SiteB) -> None:
    _, page = _study_page(site_b, net, make_patient(4242, sex="M", with_ins=True))
    assert "Aucun examen d&#39;imagerie publié" in page


def test_emergency_access_reaches_the_registry(net: Net, site_b: SiteB) -> None:
    _, page = _study_page(site_b, net, net.screened_patient, Situation="URGENCE")
    assert "bris de glace" in page and len(re.findall(r'data-kos="', page)) == 2
    assert [e.emergency for e in site_b.audit.events(action="contextual-call")] == [True]
    assert [e.emergency for e in site_b.audit.events(action="portal.patient")] == [True]


def test_registry_unreachable_page(net: Net, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.4", 0))
        dead = f"http://127.0.0.4:{s.getsockname()[1]}"
    for site in _site_b(net, tmp_path, registry={"base_url": dead}):
        called = site.client.post("/contextual-call", data=_form(net.screened_patient))
        page = site.client.get(called.headers["location"], headers={"Authorization": f"Bearer {net.token()}"})
        assert page.status_code == 503 and "Registre injoignable" in page.text


def test_dmp_link_on_site_a(net: Net, tmp_path: Path) -> None:
    """The stable link of an exam site A published: its outbox says which study; unknown KOS → 404."""
    site_a = net.settings("site-a")
    lookup = published_study_lookup(Outbox(outbox_path(site_a)))
    kos, _ = published_kos(net.endpoints["registry"]["fhir"], net.token(), net.screened_patient)[0]
    study = str(kos.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID)
    assert lookup(str(kos.SOPInstanceUID)) == study
    assert lookup("1.2.3.4.5") is None
    audit = AuditStore(tmp_path / "audit.sqlite")
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(web_router(directory=None, audit=audit, remote=RemoteStudies(),  # type: ignore[arg-type]
                                  imports=NoImports([]), xdm=None, published_study=lookup, settings=site_a,
                                  calls=ContextualCalls(), principal=_bearer(JwtVerifier.from_settings(site_a.auth)),
                                  actor_of=_actor_of))
    with TestClient(app, follow_redirects=False) as client:
        assert client.get(f"/exams/{kos.SOPInstanceUID}").headers["location"].startswith("/auth/login?next=")
        token = {"Authorization": f"Bearer {net.token()}"}
        opened = client.get(f"/exams/{kos.SOPInstanceUID}", headers=token)
        assert opened.status_code == 303 and opened.headers["location"] == f"/viewer?StudyInstanceUIDs={study}"
        assert client.get("/exams/1.2.3.4.5", headers=token).status_code == 404
    assert [e.outcome for e in audit.events(action="dmp-link.view")] == ["success", "refused"]
    audit.close()
