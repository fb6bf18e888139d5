"""Stand-ins for the web pages' collaborators (the registry directory, the viewer index, the import
jobs, the browser principal) so the pages are tested without the demo network."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, Request

from drimbox.config import NodeSettings
from drimbox.errors import LoginRequired
from drimbox.http_errors import install_error_handlers
from drimbox.retrieve.model import (
    Actor,
    Exam,
    InstanceRef,
    PatientRecord,
    PatientTraits,
    RelatedDocument,
    SeriesRef,
)
from drimbox.trust.audit import AuditStore
from drimbox.trust.principal import Principal
from drimbox.web import ContextualCalls, public_router, web_router

HOSTILE = "<script>alert('x')</script>"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

CDA_NARRATIVE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:x="http://www.w3.org/1999/xhtml">
  <title>Mammographie de dépistage</title>
  <effectiveTime value="20250102101500+0100"/>
  <author><assignedAuthor><assignedPerson><name><prefix>Dr</prefix><given>Anne</given><family>RADIO</family>
  </name></assignedPerson></assignedAuthor></author>
  <component><structuredBody><component><section>
    <title>Conclusion</title>
    <text><paragraph styleCode="Bold" onclick="evil()">ACR 1 &lt;img src=x onerror=alert(1)&gt;</paragraph>
      <list listType="ordered"><item>Sein droit normal</item><item>Sein gauche normal &xxe;</item></list>
      <table><tr><th>Incidence</th><td colspan="2" onmouseover="x()">CC</td></tr></table>
      <linkHtml href="javascript:alert(2)">lien piégé</linkHtml>
      <linkHtml href="https://example.org/guide">guide</linkHtml>
      <x:script>alert(3)</x:script>
    </text>
  </section></component></structuredBody></component>
</ClinicalDocument>""".encode()

CDA_PDF = f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>CR scanner</title>
<component><nonXMLBody><text mediaType="application/pdf" representation="B64">{base64.b64encode(PDF).decode()}</text>
</nonXMLBody></component></ClinicalDocument>""".encode()


def settings(tmp: Path, **overrides: object) -> NodeSettings:
    return NodeSettings.model_validate({"name": "site-b", "pacs": {"aet": "PACS", "host": "127.0.0.1", "port": 4242},
                                        "storage": {"data_dir": str(tmp)}, **overrides})


def exam(kos: str, study: str, when: datetime, modality: str, description: str, *, report: RelatedDocument | None,
         key_images: tuple[InstanceRef, ...] = ()) -> Exam:
    instances = tuple(InstanceRef("1.2.840.10008.5.1.4.1.1.1.2", f"{study}.1.{n}") for n in range(4))
    series = (SeriesRef(f"{study}.1", f"https://127.0.0.2:8443/dicom-web/studies/{study}/series/{study}.1",
                        instances, modality),)
    return Exam(kos_uid=kos, entry_uuid=f"urn:uuid:{kos}", repository_unique_id="1.2.3", study_uid=study,
                accession_number="ACC1", performed=when, modalities=(modality,), description=description,
                body_part="BREAST" if modality == "MG" else "CHEST", source_site="CH Site A", series=series,
                report=report, key_images=key_images)


CURRENT = exam("1.9.1", "1.8.1", datetime(2025, 1, 2, 9, 15, tzinfo=UTC), "MG", f"Mammographie {HOSTILE}",
               report=RelatedDocument("1.7.1", "1.2.3", "text/xml", "CR mammographie"),
               key_images=(InstanceRef("1.2.840.10008.5.1.4.1.1.1.2", "1.8.1.1.2"),))
PRIOR = exam("1.9.2", "1.8.2", datetime(2023, 1, 5, 9, 0, tzinfo=UTC), "MG", "Mammographie antérieure",
             report=RelatedDocument("1.7.2", "1.2.3", "application/pdf", "CR PDF"))
CT = exam("1.9.3", "1.8.3", datetime(2020, 6, 1, 14, 0, tzinfo=UTC), "CT", "Scanner thoracique",
          report=RelatedDocument("1.7.3", "1.2.3", "text/xml", "CR scanner"))


@dataclass
class FakeDirectory:
    exams: tuple[Exam, ...] = (CURRENT, PRIOR, CT)
    hidden: int = 2
    failure: Exception | None = None
    documents: dict[str, bytes] = field(default_factory=lambda: {"1.7.1": CDA_NARRATIVE, "1.7.2": PDF,
                                                                 "1.7.3": CDA_PDF})
    actors: list[Actor] = field(default_factory=list)

    def patient_record(self, traits: PatientTraits, actor: Actor) -> PatientRecord:
        self.actors.append(actor)
        if self.failure is not None:
            raise self.failure
        return PatientRecord(traits=traits, exams=self.exams, hidden=self.hidden)

    def document(self, document: RelatedDocument, actor: Actor) -> bytes:
        return self.documents[document.unique_id]

    def is_deprecated(self, kos_uid: str, actor: Actor | None = None) -> bool:
        return False


@dataclass
class FakeRemote:
    opened: list[tuple[Exam, Actor, str | None]] = field(default_factory=list)

    def open(self, exam: Exam, actor: Actor, *, patient_id: str | None = None) -> None:
        self.opened.append((exam, actor, patient_id))


@dataclass
class FakeJob:
    exam: Exam
    subject: str
    state: str = "retrieving"
    expected: int = 4
    received: int = 1
    bytes: int = 17_000_000
    imported: int = 0
    committed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state in ("done", "incomplete", "failed")


@dataclass
class FakeImports:
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    traits: list[PatientTraits | None] = field(default_factory=list)

    def start_import(self, exam: Exam, traits: PatientTraits | None, actor: Actor) -> str:
        job_id = f"job{len(self.jobs) + 1}"
        self.jobs[job_id] = FakeJob(exam, actor.subject)
        self.traits.append(traits)
        return job_id

    def get(self, job_id: str) -> FakeJob | None:
        return self.jobs.get(job_id)


USERS = {
    "token-alice": Principal(subject="rpps:10101010101", kind="practitioner", issuer="idp", rpps="10101010101",
                             role="radiologist", display_name="Dr Alice"),
    "token-bob": Principal(subject="rpps:20202020202", kind="practitioner", issuer="idp", rpps="20202020202",
                           role="radiologist", display_name="Dr Bob"),
}


def bearer_principal(users: dict[str, Principal]) -> Callable[[Request], Principal]:
    """Like the browser principal: a bearer token, else a login redirect back to the page."""

    def principal(request: Request) -> Principal:
        auth = request.headers.get("authorization", "")
        user = users.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
        if user is None:
            query = f"?{request.url.query}" if request.url.query else ""
            raise LoginRequired("login required", next_url=f"{request.url.path}{query}")
        return user

    return principal


def actor_of(request: Request, principal: Principal) -> Actor:
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return Actor(subject=principal.subject, rpps=principal.rpps, role=principal.role,
                 display_name=principal.display_name, token=token)


@dataclass
class Portal:
    app: FastAPI
    directory: FakeDirectory
    remote: FakeRemote
    imports: FakeImports
    audit: AuditStore
    calls: ContextualCalls
    xdm_calls: list[Exam]


def build_portal(tmp: Path, *, directory: FakeDirectory | None = None, with_xdm: bool = True,
                 published: dict[str, str] | None = None,
                 xdm_export: Callable[[Exam, PatientTraits, Actor], bytes | Path] | None = None,
                 **setting_overrides: object) -> Portal:
    node = settings(tmp, **setting_overrides)
    directory = directory or FakeDirectory()
    remote, imports = FakeRemote(), FakeImports()
    audit = AuditStore(tmp / "audit.sqlite")
    calls = ContextualCalls(ttl_s=node.oidc.session_ttl_s)
    xdm_calls: list[Exam] = []

    def xdm(exam: Exam, traits: PatientTraits, actor: Actor) -> bytes:
        xdm_calls.append(exam)
        return b"PK\x05\x06" + b"\x00" * 18

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(public_router(calls=calls, audit=audit, settings=node))
    app.include_router(web_router(directory=directory, audit=audit, remote=remote, imports=imports,
                                  xdm=(xdm_export or xdm) if with_xdm else None,
                                  published_study=(published or {"1.9.1": "1.8.1"}).get, settings=node,
                                  calls=calls, principal=bearer_principal(USERS), actor_of=actor_of))
    return Portal(app, directory, remote, imports, audit, calls, xdm_calls)


def with_traits(exam_: Exam, **changes: object) -> Exam:
    return replace(exam_, **changes)  # type: ignore[arg-type]
