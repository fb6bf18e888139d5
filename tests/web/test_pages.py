"""The node's web pages with stand-in collaborators: F5 contextual call (303/400/403, French by
default, English on request, JSON problems), F6 study page, report, view, import, XDM, DMP link,
login redirects, audit, escaping of hostile values, registry outage."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from drimbox.errors import RegistryUnavailable
from drimbox.retrieve.model import Actor, Exam, PatientTraits
from drimbox.retrieve.xdm import XdmOrigin
from drimbox.trust.audit import AuditEvent
from drimbox.web import xdm_exporter
from drimbox.web.i18n import CATALOGUE, placeholders
from tests.web.fakes import CDA_NARRATIVE, CURRENT, HOSTILE, PDF, FakeDirectory, Portal, build_portal

ALICE = {"Authorization": "Bearer token-alice"}
BOB = {"Authorization": "Bearer token-bob"}
FORM = {
    "Patient.identifier.value": "206127511100564", "Patient.identifier.system": "urn:oid:1.2.250.1.213.1.4.10",
    "Patient.name.family": "DUPONT", "Patient.name.given": "Hélène", "Patient.gender": "F",
    "Patient.birthDate": "2006-12-03", "Address.district": "75111", "InformationEtConsentement": "true",
    "PatientID": "IPP123", "PatientIDIssuer": "CH-DEMO-IPP",
}


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    built = build_portal(tmp_path)
    yield built
    built.audit.close()


@pytest.fixture
def client(portal: Portal) -> Iterator[TestClient]:
    with TestClient(portal.app, follow_redirects=False) as c:
        yield c


def call(client: TestClient, url: str = "/contextual-call", **changes: str) -> str:
    """Make a contextual call; return the study page path it redirects to."""
    response = client.post(url, data={**FORM, **changes})
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


def events(portal: Portal, action: str) -> list[AuditEvent]:
    return list(portal.audit.events(action=action))


# -- F5 -----------------------------------------------------------------------------------------------


def test_contextual_call_redirects_without_the_ins_in_the_url(client: TestClient, portal: Portal) -> None:
    location = call(client)
    assert re.fullmatch(r"/portal/patients/[A-Za-z0-9_-]{20,}", location)
    assert FORM["Patient.identifier.value"] not in location and "DUPONT" not in location
    [event] = events(portal, "contextual-call")
    assert (event.outcome, event.patient_ins, event.emergency) == ("success", "206127511100564", False)


def test_study_page_needs_login_and_comes_back(client: TestClient) -> None:
    location = call(client)
    response = client.get(location)
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == "/auth/login" and unquote(parse_qs(target.query)["next"][0]) == location
    assert "DUPONT" not in response.text and "206127511100564" not in response.text


def test_invalid_call_lists_every_problem_in_french(client: TestClient, portal: Portal) -> None:
    response = client.post("/contextual-call", data={**FORM, "Patient.identifier.value": "206127511100565",
                                                     "Patient.identifier.system": "1.2.3", "Patient.gender": "",
                                                     "Patient.birthDate": "2006/12/03"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<html lang="fr">' in page
    assert "Appel contextuel refusé" in page and "4 problème(s)" in page
    assert "La clé « 65 »" in page
    assert "n'est pas l'OID d'un INS" in page.replace("&#39;", "'")
    assert "Champ obligatoire absent ou vide." in page
    assert "Date de naissance « 2006/12/03 » invalide" in page
    [event] = events(portal, "contextual-call")
    assert event.outcome == "refused" and "key" in event.detail


def test_invalid_call_in_english(client: TestClient) -> None:
    response = client.post("/contextual-call?lang=en", data={**FORM, "Patient.gender": "M"})
    assert response.status_code == 400
    assert '<html lang="en">' in response.text
    assert "Contextual call refused" in response.text
    assert "does not match the first digit of the INS (2)" in response.text


def test_accept_language_picks_english(client: TestClient) -> None:
    response = client.post("/contextual-call", data={**FORM, "Patient.gender": "M"},
                           headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
    assert '<html lang="en">' in response.text


def test_invalid_call_as_problem_json(client: TestClient) -> None:
    response = client.post("/contextual-call?lang=en", data={**FORM, "Patient.identifier.system": "1.2.3"},
                           headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["fields"] == [{"field": "Patient.identifier.system", "code": "oid.unknown"}]
    assert "is not an INS OID" in body["problems"][0]


def test_hostile_name_is_escaped(client: TestClient) -> None:
    response = client.post("/contextual-call", data={**FORM, "Patient.name.family": HOSTILE})
    assert response.status_code == 400
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


def test_field_sent_twice_with_different_values(client: TestClient) -> None:
    body = urlencode(FORM) + "&Patient.gender=M"
    response = client.post("/contextual-call", content=body.encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert "plusieurs fois" in response.text


def test_latin1_form_is_understood(client: TestClient) -> None:
    body = urlencode(FORM, encoding="latin-1")
    response = client.post("/contextual-call", content=body.encode("ascii"),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 303
    assert client.get(response.headers["location"], headers=ALICE).text.count("Hélène") == 1


def test_no_consent_is_refused_with_403(client: TestClient, portal: Portal) -> None:
    response = client.post("/contextual-call", data={**FORM, "InformationEtConsentement": "false"})
    assert response.status_code == 403
    assert "informé" in response.text and "Aucune donnée n'a été recherchée" in response.text.replace("&#39;", "'")
    english = client.post("/contextual-call?lang=en", data={**FORM, "InformationEtConsentement": "false"})
    assert english.status_code == 403 and "must have been informed" in english.text
    assert [e.outcome for e in events(portal, "contextual-call")] == ["refused", "refused"]
    assert portal.directory.actors == []  # nothing looked up


def test_emergency_is_flagged_in_audit_and_on_the_page(client: TestClient, portal: Portal) -> None:
    location = call(client, Situation="URGENCE")
    [event] = events(portal, "contextual-call")
    assert event.emergency and "URGENCE" in event.detail
    page = client.get(location, headers=ALICE)
    assert "bris de glace" in page.text
    assert portal.directory.actors[-1].emergency
    [view] = events(portal, "portal.patient")
    assert view.emergency


# -- F6 -----------------------------------------------------------------------------------------------


def test_study_page_shows_traits_and_exams_newest_first(client: TestClient, portal: Portal) -> None:
    location = call(client)
    response = client.get(location, headers=ALICE)
    assert response.status_code == 200
    page = response.text
    assert '<html lang="fr">' in page and "Imagerie du patient" in page
    for trait in ("DUPONT", "Hélène", "03/12/2006", "Féminin", "75111", "206127511100564", "1.2.250.1.213.1.4.10",
                  "INS-NIR de test"):
        assert trait in page, trait
    assert re.findall(r'data-kos="([^"]+)"', page) == ["1.9.1", "1.9.2", "1.9.3"]
    assert page.count("Antérieur") == 2 and page.count("Le plus récent") == 1
    assert "2 document(s) masqué(s)" in page
    assert "CH Site A" in page and "BREAST" in page and "Images clés (1)" in page and "1.8.1.1.2" in page
    assert "02/01/2025 10:15" in page  # 09:15 UTC on the site's wall clock (Europe/Paris)
    assert f"{location}/exams/1.9.1/report" in page and f"{location}/exams/1.9.1/view" in page
    assert f"{location}/exams/1.9.1/xdm" in page and 'method="post"' in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # the hostile exam description
    assert response.headers["cache-control"] == "no-store"
    [event] = events(portal, "portal.patient")
    assert (event.subject, event.patient_ins, event.outcome) == ("rpps:10101010101", "206127511100564", "success")


def test_study_page_in_english_remembers_the_choice(client: TestClient) -> None:
    location = call(client)
    response = client.get(f"{location}?lang=en", headers=ALICE)
    assert '<html lang="en">' in response.text and "Patient imaging" in response.text and "Female" in response.text
    assert "2025-01-02 10:15" in response.text
    assert response.cookies.get("drimbox_lang") == "en"
    again = client.get(location, headers=ALICE)  # the cookie keeps English
    assert '<html lang="en">' in again.text and 'href="/portal/patients/' in again.text
    assert "lang=fr" in again.text  # the switch back


def test_call_belongs_to_the_first_user(client: TestClient) -> None:
    location = call(client)
    assert client.get(location, headers=ALICE).status_code == 200
    other = client.get(location, headers=BOB)
    assert other.status_code == 404 and "DUPONT" not in other.text


def test_unknown_call(client: TestClient) -> None:
    response = client.get("/portal/patients/nope", headers=ALICE)
    assert response.status_code == 404 and "expiré" in response.text


def test_registry_unreachable_is_a_503_page(tmp_path: Path) -> None:
    portal = build_portal(tmp_path, directory=FakeDirectory(failure=RegistryUnavailable("connection refused")))
    with TestClient(portal.app, follow_redirects=False) as client:
        response = client.get(call(client), headers=ALICE)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "Registre injoignable" in response.text and "Réessayer" in response.text
    [event] = portal.audit.events(action="portal.patient")
    assert event.outcome == "failure"


def test_no_exam(tmp_path: Path) -> None:
    portal = build_portal(tmp_path, directory=FakeDirectory(exams=(), hidden=0))
    with TestClient(portal.app, follow_redirects=False) as client:
        response = client.get(call(client), headers=ALICE)
    assert response.status_code == 200 and "Aucun examen d'imagerie" in response.text.replace("&#39;", "'")
    assert "masqué" not in response.text


# -- report, view, import, XDM ------------------------------------------------------------------------


def test_cda_report_narrative_is_rendered_safely(client: TestClient, portal: Portal) -> None:
    location = call(client)
    response = client.get(f"{location}/exams/1.9.1/report", headers=ALICE)
    assert response.status_code == 200
    page = response.text
    assert "Mammographie de dépistage" in page and "Conclusion" in page and "Dr Anne RADIO" in page
    assert '<p class="cda-bold">ACR 1 &lt;img src=x onerror=alert(1)&gt;</p>' in page
    assert "<ol><li>Sein droit normal</li>" in page and '<td colspan="2">CC</td>' in page
    assert '<a href="https://example.org/guide" rel="noopener noreferrer nofollow">guide</a>' in page
    for hostile in ("<script", "onclick", "onmouseover", "javascript:", "<img", "root:"):
        assert hostile not in page, hostile
    [event] = events(portal, "portal.report")
    assert (event.kos_uid, event.study_uid) == ("1.9.1", "1.8.1")
    assert CDA_NARRATIVE  # the fixture really carries the hostile parts


def test_pdf_report_is_served_as_pdf(client: TestClient) -> None:
    response = client.get(f"{call(client)}/exams/1.9.2/report", headers=ALICE)
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert response.content == PDF


def test_cda_with_pdf_body_links_its_attachment(client: TestClient) -> None:
    location = call(client)
    page = client.get(f"{location}/exams/1.9.3/report", headers=ALICE)
    assert "CR scanner" in page.text and "attachment=true" in page.text
    attachment = client.get(f"{location}/exams/1.9.3/report?attachment=true", headers=ALICE)
    assert attachment.headers["content-type"] == "application/pdf" and attachment.content == PDF


def test_view_opens_the_remote_study_and_redirects_to_ohif(client: TestClient, portal: Portal) -> None:
    location = call(client)
    response = client.get(f"{location}/exams/1.9.1/view", headers=ALICE)
    assert response.status_code == 303
    assert response.headers["location"] == "/viewer?StudyInstanceUIDs=1.8.1&hangingProtocolId=@ohif/hpMammo"
    exam, actor, patient_id = portal.remote.opened[0]
    assert (exam.kos_uid, actor.subject, patient_id) == ("1.9.1", "rpps:10101010101", "206127511100564")
    ct = client.post(f"{location}/exams/1.9.3/view", headers=ALICE)
    assert ct.headers["location"] == "/viewer?StudyInstanceUIDs=1.8.3"
    assert [e.kos_uid for e in events(portal, "portal.view")] == ["1.9.1", "1.9.3"]


def test_unknown_exam(client: TestClient, portal: Portal) -> None:
    location = call(client)
    response = client.get(f"{location}/exams/9.9.9/view", headers=ALICE)
    assert response.status_code == 404 and portal.remote.opened == []


def test_import_starts_a_job_and_shows_progress(client: TestClient, portal: Portal) -> None:
    location = call(client)
    response = client.post(f"{location}/exams/1.9.1/import", headers=ALICE)
    assert response.status_code == 303
    progress = response.headers["location"]
    assert progress.startswith("/portal/imports/job1?patient=")
    assert portal.imports.traits[0] is not None and portal.imports.traits[0].local_id == "IPP123"
    page = client.get(progress, headers=ALICE)
    assert page.status_code == 200
    assert "récupération depuis le site source" in page.text and "1 sur 4" in page.text and "17.0 Mo" in page.text
    assert 'http-equiv="refresh"' in page.text and location in page.text
    portal.imports.jobs["job1"].state = "done"
    done = client.get(progress, headers=ALICE)
    assert "terminé" in done.text and 'http-equiv="refresh"' not in done.text
    assert client.get(progress, headers=BOB).status_code == 404
    assert [e.outcome for e in events(portal, "portal.import")] == ["success"]


def test_xdm_export(client: TestClient, portal: Portal) -> None:
    response = client.get(f"{call(client)}/exams/1.9.1/xdm", headers=ALICE)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert "XDM-1.8.1.zip" in response.headers["content-disposition"]
    assert [e.kos_uid for e in portal.xdm_calls] == ["1.9.1"]
    assert [e.outcome for e in events(portal, "xdm.export")] == ["success"]


def test_xdm_not_configured(tmp_path: Path) -> None:
    portal = build_portal(tmp_path, with_xdm=False)
    with TestClient(portal.app, follow_redirects=False) as client:
        location = call(client)
        assert "/xdm" not in client.get(location, headers=ALICE).text
        assert client.get(f"{location}/exams/1.9.1/xdm", headers=ALICE).status_code == 404


def test_xdm_temporary_file_is_removed_once_sent(tmp_path: Path) -> None:
    made: list[Path] = []

    def export(exam: Exam, traits: PatientTraits, actor: Actor) -> Path:
        path = tmp_path / f"xdm-{len(made)}.zip"
        path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
        made.append(path)
        return path

    portal = build_portal(tmp_path, xdm_export=export)
    with TestClient(portal.app, follow_redirects=False) as client:
        response = client.get(f"{call(client)}/exams/1.9.1/xdm", headers=ALICE)
    assert response.status_code == 200 and response.content.startswith(b"PK")
    assert made and not made[0].exists()


def test_xdm_of_an_exam_not_retrieved(tmp_path: Path) -> None:
    export = xdm_exporter(work_dir=tmp_path / "retrieved", origin=XdmOrigin("site-b", "1.2.3"),
                          spool_dir=tmp_path / "spool")
    portal = build_portal(tmp_path, xdm_export=export)
    with TestClient(portal.app, follow_redirects=False) as client:
        response = client.get(f"{call(client)}/exams/1.9.1/xdm", headers=ALICE)
    assert response.status_code == 409 and "importez-le d&#39;abord" in response.text
    assert [e.outcome for e in portal.audit.events(action="xdm.export")] == ["refused"]


def test_actions_need_login(client: TestClient) -> None:
    location = call(client)
    for method, path in (("GET", "/report"), ("GET", "/view"), ("POST", "/import"), ("GET", "/xdm")):
        response = client.request(method, f"{location}/exams/1.9.1{path}")
        assert response.status_code == 303 and response.headers["location"].startswith("/auth/login?next="), path
    assert client.get("/portal/imports/job1").status_code == 303


# -- the DMP link -------------------------------------------------------------------------------------


def test_dmp_link_opens_the_published_exam(client: TestClient, portal: Portal) -> None:
    login = client.get("/exams/1.9.1")
    assert login.status_code == 303 and login.headers["location"] == "/auth/login?next=%2Fexams%2F1.9.1"
    response = client.get("/exams/1.9.1", headers=ALICE)
    assert response.status_code == 303 and response.headers["location"] == "/viewer?StudyInstanceUIDs=1.8.1"
    missing = client.get("/exams/1.9.9", headers=ALICE)
    assert missing.status_code == 404 and "retirée" in missing.text
    assert [(e.kos_uid, e.outcome) for e in events(portal, "dmp-link.view")] == [("1.9.1", "success"),
                                                                                  ("1.9.9", "refused")]


# -- frame --------------------------------------------------------------------------------------------


def test_stylesheet_is_public(client: TestClient) -> None:
    response = client.get("/web/static/drimbox.css")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")


def test_catalogue_has_both_languages_with_the_same_parameters() -> None:
    for key, (fr, en) in CATALOGUE.items():
        assert fr and en, key
        placeholders(key)  # both parse
        assert set(re.findall(r"\{(\w+)\}", fr)) == set(re.findall(r"\{(\w+)\}", en)), key


def test_exam_fixture_is_mammography() -> None:
    assert CURRENT.modalities == ("MG",)
