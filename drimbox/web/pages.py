"""The node's web pages: the contextual call (F5), the patient's study page (F6), its actions, and
the DMP link to an exam this site published.

Two routers, because two kinds of caller:

- :func:`public_router` — ``POST /contextual-call`` and the stylesheet. The call comes from the
  practitioner's software before anyone has logged in, so it needs no session — and shows no data:
  it validates the traits, keeps them (:class:`~drimbox.web.calls.ContextualCalls`) and redirects to
  the study page.
- :func:`web_router` — every page that shows or touches patient data. The browser principal
  dependency is attached to the router itself, so no page can forget it: without a session (or a
  bearer token) it raises :class:`~drimbox.errors.LoginRequired`, which the app turns into a redirect
  to the login that comes back to the page.

Pages are plain HTML (Jinja2, autoescaped, no script), in French or English (:mod:`drimbox.web.i18n`).
Every access is audited. A registry or source node that cannot be reached gives a page that says so
(503/502), never a 500.

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the route
signatures at run time, and the principal dependency is a value of the factory's closure.
"""

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Protocol, get_args
from urllib.parse import parse_qsl, quote, urlencode

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.background import BackgroundTask

from drimbox.config import NodeSettings
from drimbox.errors import (
    DrimboxError,
    ImportFailed,
    InvalidRequest,
    NetworkError,
    RegistryRefused,
    RegistryUnavailable,
    SourceUnavailable,
)
from drimbox.retrieve.model import Actor, Exam, ExamDirectory, PatientRecord, PatientTraits
from drimbox.trust.audit import AuditEvent, AuditTrail, Outcome
from drimbox.trust.principal import Principal
from drimbox.web.calls import ContextualCalls, StoredCall
from drimbox.web.cda import CdaReport, read_cda
from drimbox.web.i18n import LANG_COOKIE, LANGUAGES, Language, Translator, choose_language, translator
from drimbox.web.ins import ConsentNotGiven, ContextualCall, ContextualCallInvalid, Problem, parse_contextual_call
from drimbox.web.sources import NotRetrieved

__all__ = [
    "CSS_PATH",
    "ImportLauncher",
    "ImportProgress",
    "PublishedStudy",
    "RemoteViewer",
    "SessionAccess",
    "XdmExport",
    "public_router",
    "viewer_url",
    "web_router",
]

log = structlog.get_logger(__name__)

CSS_PATH = "/web/static/drimbox.css"
_HERE = Path(__file__).parent
_ENV = Environment(loader=FileSystemLoader(_HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_MAX_FORM_BYTES = 64 * 1024
_RECORD_MAX_AGE_S = 300.0
"""Actions (report, view, import) reuse the record the page was built from for this long."""
_MAMMO_PROTOCOL = "@ohif/hpMammo"


# -- collaborators ---------------------------------------------------------------------------------


class RemoteViewer(Protocol):
    """What the view action needs of :class:`drimbox.retrieve.viewing.RemoteStudies`."""

    def open(self, exam: Exam, actor: Actor, *, patient_id: str | None = None) -> None: ...


class ImportProgress(Protocol):
    """What the progress page reads of :class:`drimbox.retrieve.jobs.ImportJob`."""

    @property
    def exam(self) -> Exam: ...
    @property
    def subject(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def expected(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def imported(self) -> int: ...
    @property
    def committed(self) -> int: ...
    @property
    def problems(self) -> Sequence[str]: ...
    @property
    def done(self) -> bool: ...


class ImportLauncher(Protocol):
    """Background retrieve-and-import (:class:`drimbox.retrieve.jobs.ImportJobs`)."""

    def start_import(self, exam: Exam, traits: PatientTraits | None, actor: Actor) -> str:
        """Queue the import; return the job id at once."""
        ...

    def get(self, job_id: str) -> ImportProgress | None: ...


XdmExport = Callable[[Exam, PatientTraits, Actor], bytes | Path]
"""Build the XDM zip of a (retrieved) exam: its bytes, or a temporary file the page deletes once sent
(:func:`drimbox.web.sources.xdm_exporter`); raise :class:`~drimbox.web.sources.NotRetrieved` when the
exam's instances are not on the node."""

PublishedStudy = Callable[[str], str | None]
"""KOS SOP Instance UID → Study Instance UID(s, comma-separated) while this node publishes it, else ``None``."""


class SessionAccess(Protocol):
    """The browser session, when the app has one (:mod:`drimbox.trust.sessions`): where the chosen
    language is remembered and an emergency access is marked."""

    def language(self, request: Request) -> str | None: ...

    def set_language(self, request: Request, language: str) -> None: ...

    def mark_emergency(self, request: Request) -> None: ...


# -- helpers ---------------------------------------------------------------------------------------


def viewer_url(study_uids: str, modalities: Sequence[str] = (), *, base: str = "/viewer") -> str:
    """The OHIF URL of a study; mammography opens with OHIF's mammography hanging protocol."""
    params = {"StudyInstanceUIDs": study_uids}
    if "MG" in modalities:
        params["hangingProtocolId"] = _MAMMO_PROTOCOL
    return f"{base}?{urlencode(params, safe=',@/')}"


def _seg(value: str) -> str:
    return quote(value, safe="")


def _client(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "json" in accept and "text/html" not in accept


class _Pages:
    """Language choice and rendering shared by both routers."""

    def __init__(self, settings: NodeSettings, sessions: SessionAccess | None) -> None:
        self.settings = settings
        self.sessions = sessions

    def language(self, request: Request) -> tuple[Language, bool]:
        session_lang = None
        if self.sessions is not None:
            try:
                session_lang = self.sessions.language(request)
            except DrimboxError:
                session_lang = None
        return choose_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE), session_lang,
                               request.headers.get("accept-language"), self.settings.viewer.language)

    def translator(self, request: Request) -> tuple[Translator, bool]:
        lang, chosen = self.language(request)
        return translator(lang, self.settings.publish.timezone), chosen

    def render(self, request: Request, template: str, *, status: int = 200, switch: bool = True,
               headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        t, chosen = self.translator(request)
        other = LANGUAGES[1 - LANGUAGES.index(t.language)]
        switch_url = None
        if switch and request.method == "GET":
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"] + [("lang", other)]
            switch_url = f"{request.url.path}?{urlencode(query)}"
        body = _ENV.get_template(template).render(
            t=t, lang=t.language, other_lang=other, switch_url=switch_url, css_url=CSS_PATH,
            node=self.settings.name, refresh=context.pop("refresh", None), **context)
        response = HTMLResponse(body, status_code=status, headers=headers)
        response.headers["Cache-Control"] = "no-store"  # patient data: never cached by the browser
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'self'; img-src 'self'; " \
                                                      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        if chosen:
            response.set_cookie(LANG_COOKIE, t.language, max_age=365 * 86400, httponly=True, samesite="lax")
            if self.sessions is not None:
                self.sessions.set_language(request, t.language)
        return response

    def error(self, request: Request, status: int, title_key: str, message: str, *, details: Sequence[str] = (),
              retry: bool = False, back: str | None = None, headers: dict[str, str] | None = None) -> HTMLResponse:
        t, _ = self.translator(request)
        return self.render(request, "error.html", status=status, headers=headers, title=t(title_key),
                           message=message, details=list(details), retry_url=str(request.url) if retry else None,
                           back_url=back)

    def network_error(self, request: Request, exc: DrimboxError, *, back: str | None = None) -> HTMLResponse:
        """The page for a registry/source/PACS failure: says which, and whether retrying may help."""
        t, _ = self.translator(request)
        if isinstance(exc, RegistryUnavailable):
            return self.error(request, 503, "error.registry.title", t("error.registry.body"), details=[str(exc)],
                              retry=True, back=back, headers={"Retry-After": "5"})
        if isinstance(exc, RegistryRefused):
            return self.error(request, 502, "error.registry_refused.title", str(exc), back=back)
        if isinstance(exc, SourceUnavailable):
            return self.error(request, 503, "error.source.title", t("error.source.body"), details=[str(exc)],
                              retry=True, back=back, headers={"Retry-After": "5"})
        if isinstance(exc, NetworkError | ImportFailed):
            return self.error(request, 502, "error.network.title", str(exc), back=back)
        if isinstance(exc, InvalidRequest):
            return self.error(request, 400, "error.failed.title", str(exc), details=exc.problems, back=back)
        log.error("page failed", error=f"{type(exc).__name__}: {exc}", path=request.url.path)
        return self.error(request, 500, "error.failed.title", f"{type(exc).__name__}: {exc}", back=back)


# -- F5: the contextual call -----------------------------------------------------------------------


def _decode_form(body: bytes) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` pairs: UTF-8, else Windows-1252 (older RIS software)."""
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return parse_qsl(body.decode("cp1252", errors="replace"), keep_blank_values=True, encoding="cp1252",
                         errors="replace")


def public_router(*, calls: ContextualCalls, audit: AuditTrail, settings: NodeSettings,
                  sessions: SessionAccess | None = None) -> APIRouter:
    """``POST /contextual-call`` and the pages' stylesheet: include *without* authentication."""
    router = APIRouter(tags=["pages"])
    pages = _Pages(settings, sessions)
    css = (_HERE / "static" / "drimbox.css").read_bytes()

    @router.get(CSS_PATH, include_in_schema=False)
    def stylesheet() -> Response:
        return Response(css, media_type="text/css; charset=utf-8", headers={"Cache-Control": "public, max-age=3600"})

    @router.post("/contextual-call", status_code=303, response_class=RedirectResponse,
                 responses={400: {"description": "invalid traits (every problem listed)"},
                            403: {"description": "InformationEtConsentement not true"}})
    async def contextual_call(request: Request) -> Response:
        """F5: validate the patient's INS traits, keep them, and redirect to the patient's study page.

        Nothing is looked up here: the page it redirects to requires the user to log in first.
        """
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            pairs: list[tuple[str, str]] = []
            problems: tuple[Problem, ...] = (Problem("-", "too_long", {"max": str(_MAX_FORM_BYTES)}),)
        else:
            pairs, problems = _decode_form(body), ()
        raw_ins = next((v for k, v in pairs if k.lower() == "patient.identifier.value"), None)
        situation = next((v for k, v in pairs if k.lower() == "situation" and v.strip()), None)

        def record(outcome: Outcome, detail: str, *, emergency: bool = False, ins: str | None = raw_ins) -> None:
            audit.record(AuditEvent(action="contextual-call", outcome=outcome, patient_ins=(ins or None) and ins[:40],
                                    emergency=emergency, source=_client(request), detail=detail[:2000]))

        try:
            if problems:
                raise ContextualCallInvalid(problems)
            call = _form_with_duplicates(pairs)
        except ConsentNotGiven as exc:
            record("refused", f"InformationEtConsentement={exc.value!r}", emergency=situation is not None)
            if _wants_json(request):
                return _problem_json(request, 403, "consent not given", [str(exc)])
            t, _ = pages.translator(request)
            return pages.render(request, "call_refused.html", status=403, switch=False,
                                title=t("call.consent.title"), value=exc.value)
        except ContextualCallInvalid as exc:
            record("refused", "; ".join(exc.problems), emergency=situation is not None)
            t, _ = pages.translator(request)
            if _wants_json(request):
                return _problem_json(request, 400, "invalid contextual call", [t.problem(p) for p in exc.details],
                                     fields=[{"field": p.field, "code": p.code} for p in exc.details])
            return pages.render(request, "call_invalid.html", status=400, switch=False,
                                title=t("call.invalid.title"), problems=exc.details)
        stored = calls.add(call, source=_client(request))
        record("success", f"situation={call.situation}" if call.situation else "", emergency=call.emergency,
               ins=call.traits.ins)
        response = RedirectResponse(f"/portal/patients/{_seg(stored.id)}", status_code=303)
        lang = request.query_params.get("lang")
        if lang in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax")
        return response

    return router


def _form_with_duplicates(pairs: list[tuple[str, str]]) -> ContextualCall:
    """Validate the form; a field sent twice with different values is a problem, not a silent choice."""
    seen: dict[str, str] = {}
    clashes: list[Problem] = []
    for name, value in pairs:
        key = name.strip().lower()
        previous = next((v for k, v in seen.items() if k.strip().lower() == key), None)
        if previous is not None and previous.strip() != value.strip():
            clashes.append(Problem(name.strip(), "duplicate"))
        seen[name] = value
    return parse_contextual_call(seen, extra=clashes)


def _problem_json(request: Request, status: int, title: str, problems: list[str], **extra: object) -> JSONResponse:
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status,
                               "instance": request.url.path, "problems": problems, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


# -- F6: the study page and its actions ------------------------------------------------------------


def _default_principal() -> Callable[..., Principal]:
    """The browser principal dependency of :mod:`drimbox.trust.deps` (imported when the router is built)."""
    deps = importlib.import_module("drimbox.trust.deps")
    annotated = deps.BrowserPrincipal
    dependency: Callable[..., Principal] = get_args(annotated)[1].dependency
    return dependency


def _default_actor_of() -> Callable[[Request, Principal], Actor]:
    deps = importlib.import_module("drimbox.trust.deps")
    actor_of: Callable[[Request, Principal], Actor] = deps.actor_of
    return actor_of


def web_router(
    *,
    directory: ExamDirectory,
    audit: AuditTrail,
    remote: RemoteViewer,
    imports: ImportLauncher,
    xdm: XdmExport | None,
    published_study: PublishedStudy,
    settings: NodeSettings,
    calls: ContextualCalls,
    principal: Callable[..., Principal] | None = None,
    actor_of: Callable[[Request, Principal], Actor] | None = None,
    sessions: SessionAccess | None = None,
    viewer_base: str = "/viewer",
) -> APIRouter:
    """The pages that show patient data: include with ``app.include_router`` (not ``include_protected``:
    the browser principal — session or bearer — is attached to every route here).

    ``principal``/``actor_of`` default to :mod:`drimbox.trust.deps`'s ``BrowserPrincipal`` and
    ``actor_of``; ``calls`` is the store shared with :func:`public_router`.
    """
    principal_dep = principal or _default_principal()
    to_actor = actor_of or _default_actor_of()
    pages = _Pages(settings, sessions)
    router = APIRouter(tags=["pages"], dependencies=[Depends(principal_dep)])
    Who = Annotated[Principal, Depends(principal_dep)]

    def actor_for(request: Request, who: Principal, stored: StoredCall | None = None) -> Actor:
        actor = to_actor(request, who)
        if stored is not None and stored.call.emergency and not actor.emergency:
            actor = replace(actor, emergency=True)
            if sessions is not None:
                sessions.mark_emergency(request)
        return actor

    def event(actor: Actor, request: Request, action: str, outcome: Outcome, **fields: Any) -> None:
        audit.record(AuditEvent(action=action, outcome=outcome, subject=actor.subject, rpps=actor.rpps,
                                role=actor.role, emergency=actor.emergency, source=_client(request), **fields))

    def not_found(request: Request, key: str, back: str | None = None) -> HTMLResponse:
        t, _ = pages.translator(request)
        return pages.error(request, 404, "error.not_found.title", t(key), back=back)

    def patient_url(call_id: str) -> str:
        return f"/portal/patients/{_seg(call_id)}"

    def record_of(stored: StoredCall, actor: Actor, *, fresh: bool) -> PatientRecord:
        now = time.monotonic()
        if fresh or stored.record is None or now - stored.record_at > _RECORD_MAX_AGE_S:
            stored.record = directory.patient_record(stored.call.traits, actor)
            stored.record_at = now
        return stored.record

    def exam_of(request: Request, who: Principal, call_id: str, kos_uid: str, action: str
                ) -> tuple[StoredCall, Actor, Exam] | Response:
        """The claimed call, the actor and the exam an action is about, or the page that says why not."""
        stored = calls.claim(call_id, who.subject)
        if stored is None:
            return not_found(request, "error.call_expired")
        actor = actor_for(request, who, stored)
        traits = stored.call.traits
        try:
            exam = record_of(stored, actor, fresh=False).exam(kos_uid)
            if exam is None:  # published since the page was built?
                exam = record_of(stored, actor, fresh=True).exam(kos_uid)
        except DrimboxError as exc:
            event(actor, request, action, "failure", patient_ins=traits.ins, kos_uid=kos_uid,
                  detail=f"{type(exc).__name__}: {exc}")
            return pages.network_error(request, exc, back=patient_url(call_id))
        if exam is None:
            event(actor, request, action, "refused", patient_ins=traits.ins, kos_uid=kos_uid,
                  detail="not in the patient's record")
            return not_found(request, "error.exam_not_found", patient_url(call_id))
        return stored, actor, exam

    @router.get("/portal/patients/{call_id}", response_class=HTMLResponse)
    def patient_page(call_id: str, request: Request, who: Who) -> Response:
        """F6: the patient's strict INS traits and exams, newest first, with report, key images and actions."""
        stored = calls.claim(call_id, who.subject)
        if stored is None:
            return not_found(request, "error.call_expired")
        actor = actor_for(request, who, stored)
        traits = stored.call.traits
        try:
            record = record_of(stored, actor, fresh=True)
        except DrimboxError as exc:
            event(actor, request, "portal.patient", "failure", patient_ins=traits.ins,
                  detail=f"{type(exc).__name__}: {exc}")
            return pages.network_error(request, exc)
        event(actor, request, "portal.patient", "success", patient_ins=traits.ins,
              detail=f"{len(record.exams)} exams, {record.hidden} hidden, {len(record.problems)} unusable")
        base = patient_url(call_id)
        rows = []
        for index, exam in enumerate(record.exams):
            url = f"{base}/exams/{_seg(exam.kos_uid)}"
            rows.append({"exam": exam, "latest": index == 0, "report_url": f"{url}/report", "view_url": f"{url}/view",
                         "import_url": f"{url}/import", "xdm_url": f"{url}/xdm" if xdm is not None else None})
        t, _ = pages.translator(request)
        return pages.render(request, "patient.html", title=t("patient.title"), traits=traits, record=record,
                            exams=rows, emergency=actor.emergency)

    @router.get("/portal/patients/{call_id}/exams/{kos_uid}/report")
    def report_page(call_id: str, kos_uid: str, request: Request, who: Who, attachment: bool = False) -> Response:
        """The report published with the exam: the CDA's narrative as HTML, or the PDF itself."""
        found = exam_of(request, who, call_id, kos_uid, "portal.report")
        if isinstance(found, Response):
            return found
        stored, actor, exam = found
        t, _ = pages.translator(request)
        back = patient_url(call_id)
        if exam.report is None:
            return pages.error(request, 404, "error.not_found.title", t("error.no_report"), back=back)
        fields: dict[str, Any] = {"patient_ins": stored.call.traits.ins, "study_uid": exam.study_uid,
                                  "kos_uid": exam.kos_uid}
        try:
            content = directory.document(exam.report, actor)
        except DrimboxError as exc:
            event(actor, request, "portal.report", "failure", detail=f"{type(exc).__name__}: {exc}", **fields)
            return pages.network_error(request, exc, back=back)
        event(actor, request, "portal.report", "success", detail=exam.report.unique_id, **fields)
        mime = exam.report.mime_type.split(";")[0].strip().lower()
        private = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        if mime == "application/pdf":
            return Response(content, media_type="application/pdf", headers={
                **private, "Content-Disposition": 'inline; filename="compte-rendu.pdf"'})
        report: CdaReport | None = None
        try:
            report = read_cda(content)
        except ValueError as exc:
            log.warning("unreadable report", kos_uid=exam.kos_uid, error=str(exc))
        if report is not None and attachment and report.attachment is not None:
            media, data = report.attachment
            if media.lower() != "application/pdf":
                media = "application/octet-stream"  # never let a report be served as HTML or script
            return Response(data, media_type=media, headers={
                **private, "Content-Disposition": 'inline; filename="compte-rendu.pdf"'})
        return pages.render(request, "report.html", title=t("report.title"), exam=exam, report=report,
                            back_url=back, attachment_url=f"{request.url.path}?attachment=true")

    def open_in_viewer(call_id: str, kos_uid: str, request: Request, who: Principal) -> Response:
        found = exam_of(request, who, call_id, kos_uid, "portal.view")
        if isinstance(found, Response):
            return found
        stored, actor, exam = found
        remote.open(exam, actor, patient_id=stored.call.traits.ins)
        event(actor, request, "portal.view", "success", patient_ins=stored.call.traits.ins, study_uid=exam.study_uid,
              kos_uid=exam.kos_uid)
        return RedirectResponse(viewer_url(exam.study_uid, exam.modalities, base=viewer_base), status_code=303)

    @router.get("/portal/patients/{call_id}/exams/{kos_uid}/view")
    def view_get(call_id: str, kos_uid: str, request: Request, who: Who) -> Response:
        """F9: open the exam (streamed from its source) and redirect to the viewer."""
        return open_in_viewer(call_id, kos_uid, request, who)

    @router.post("/portal/patients/{call_id}/exams/{kos_uid}/view")
    def view_post(call_id: str, kos_uid: str, request: Request, who: Who) -> Response:
        return open_in_viewer(call_id, kos_uid, request, who)

    @router.post("/portal/patients/{call_id}/exams/{kos_uid}/import")
    def start_import(call_id: str, kos_uid: str, request: Request, who: Who) -> Response:
        """F7+F8: retrieve the exam from its source and import it into the local PACS, in the background."""
        found = exam_of(request, who, call_id, kos_uid, "portal.import")
        if isinstance(found, Response):
            return found
        stored, actor, exam = found
        fields: dict[str, Any] = {"patient_ins": stored.call.traits.ins, "study_uid": exam.study_uid,
                                  "kos_uid": exam.kos_uid}
        try:
            job_id = imports.start_import(exam, stored.call.traits, actor)
        except DrimboxError as exc:
            event(actor, request, "portal.import", "failure", detail=f"{type(exc).__name__}: {exc}", **fields)
            return pages.network_error(request, exc, back=patient_url(call_id))
        event(actor, request, "portal.import", "success", detail=f"job {job_id}", **fields)
        return RedirectResponse(f"/portal/imports/{_seg(job_id)}?{urlencode({'patient': call_id})}", status_code=303)

    @router.get("/portal/imports/{job_id}", response_class=HTMLResponse)
    def import_page(job_id: str, request: Request, who: Who, patient: str | None = None) -> Response:
        """Progress of an import (refreshes itself until done; no script)."""
        actor = actor_for(request, who)
        job = imports.get(job_id)
        back = patient_url(patient) if patient else None
        if job is None or job.subject != actor.subject:
            return not_found(request, "error.job_not_found", back)
        t, _ = pages.translator(request)
        return pages.render(request, "import.html", title=t("import.title"), job=job, back_url=back,
                            megabytes=f"{job.bytes / 1e6:.1f}", refresh=None if job.done else 2)

    @router.get("/portal/patients/{call_id}/exams/{kos_uid}/xdm")
    def xdm_export(call_id: str, kos_uid: str, request: Request, who: Who) -> Response:
        """F10: the exam as an IHE XDM archive."""
        if xdm is None:
            t, _ = pages.translator(request)
            return pages.error(request, 404, "error.not_found.title", t("error.xdm_unavailable"),
                               back=patient_url(call_id))
        found = exam_of(request, who, call_id, kos_uid, "xdm.export")
        if isinstance(found, Response):
            return found
        stored, actor, exam = found
        fields: dict[str, Any] = {"patient_ins": stored.call.traits.ins, "study_uid": exam.study_uid,
                                  "kos_uid": exam.kos_uid}
        try:
            archive = xdm(exam, stored.call.traits, actor)
        except NotRetrieved as exc:
            event(actor, request, "xdm.export", "refused", detail=str(exc), **fields)
            t, _ = pages.translator(request)
            return pages.error(request, 409, "error.failed.title", t("error.xdm_not_retrieved"),
                               back=patient_url(call_id))
        except DrimboxError as exc:
            event(actor, request, "xdm.export", "failure", detail=f"{type(exc).__name__}: {exc}", **fields)
            return pages.network_error(request, exc, back=patient_url(call_id))
        event(actor, request, "xdm.export", "success", **fields)
        headers = {"Content-Disposition": f'attachment; filename="XDM-{exam.study_uid}.zip"',
                   "Cache-Control": "no-store"}
        if isinstance(archive, Path):
            return FileResponse(archive, media_type="application/zip", headers=headers,
                                background=BackgroundTask(archive.unlink, missing_ok=True))
        return Response(archive, media_type="application/zip", headers=headers)

    @router.get("/exams/{kos_uid}")
    def dmp_link(kos_uid: str, request: Request, who: Who) -> Response:
        """The stable link a DMP entry or report carries: this site's published exam, in the viewer."""
        actor = actor_for(request, who)
        study = published_study(kos_uid)
        if study is None:
            event(actor, request, "dmp-link.view", "refused", kos_uid=kos_uid, detail="not published here")
            return not_found(request, "error.dmp_link")
        event(actor, request, "dmp-link.view", "success", kos_uid=kos_uid, study_uid=study)
        return RedirectResponse(viewer_url(study, base=viewer_base), status_code=303)

    return router
