"""The screening pages of the site face: a reader's worklist and case (with the L2 reading form), the
programme's dashboard, the L1 site's results. French by default, English with ``?lang=en``; plain HTML
(the frame of :mod:`drimbox.web`), behind the browser-principal dependency; every page names the pilot.

This module deliberately has no ``from __future__ import annotations`` (FastAPI reads the signatures).
"""

import asyncio
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError

from drimbox.errors import DrimboxError, Forbidden, InvalidRequest
from drimbox.http_errors import ERROR_RESPONSE
from drimbox.screening.api import CaseOut, RequestOut, ResultOut
from drimbox.screening.i18n import ScreeningTranslator
from drimbox.screening.metrics import dashboard
from drimbox.screening.model import L2ReadingIn, Outcome
from drimbox.screening.service import ScreeningService
from drimbox.trust.deps import BrowserPrincipal, actor_of, browser_principal
from drimbox.web.i18n import LANG_COOKIE, LANGUAGES, choose_language, translator
from drimbox.web.pages import CSS_PATH

__all__ = ["screening_pages"]

_WEB_TEMPLATES = Path(__file__).parent.parent / "web" / "templates"
_ENV = Environment(loader=ChoiceLoader([FileSystemLoader(Path(__file__).parent / "templates"),
                                        FileSystemLoader(_WEB_TEMPLATES)]),
                   autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_MAX_FORM_BYTES = 16 * 1024
# The pages answer HTML; the app's own refusals before the page runs (login, limits) stay problem details.
_HTML = {"text/html": {"schema": {"type": "string"}}, **ERROR_RESPONSE["content"]}
_REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"description": "refused (the reasons listed in the page)", "content": _HTML},
    403: {"description": "not this reader's case, or not the programme's node", "content": _HTML},
    404: {"description": "no such case", "content": _HTML},
    413: {"description": "form too large", "content": _HTML},
}
"""The pages' refusals, HTML like the pages (declared so the OpenAPI says what the site face answers)."""
_REDIRECT: dict[int | str, dict[str, Any]] = {303: {"description": "done: on to the next page"}, **_REFUSED}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min"


def screening_pages(service: ScreeningService) -> APIRouter:
    """The pages (see the module docstring)."""
    router = APIRouter(tags=["pages"], dependencies=[Depends(browser_principal)])
    settings = service.settings

    def render(request: Request, template: str, *, title_key: str, status: int = 200, **context: Any) -> HTMLResponse:
        lang, chosen = choose_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE), None,
                                       request.headers.get("accept-language"), settings.viewer.language)
        t = ScreeningTranslator(translator(lang, settings.publish.timezone))
        other = LANGUAGES[1 - LANGUAGES.index(t.language)]
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"] + [("lang", other)]
        switch = f"{request.url.path}?{urlencode(query)}" if request.method == "GET" else None
        refresh = context.pop("refresh", None)
        body = _ENV.get_template(template).render(
            t=t, title=t(title_key), lang=t.language, other_lang=other, switch_url=switch, css_url=CSS_PATH,
            node=settings.name, refresh=refresh, pilot=service.config.label, **context)
        response = HTMLResponse(body, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'self'; img-src 'self'; " \
                                                      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        if chosen:
            response.set_cookie(LANG_COOKIE, t.language, max_age=365 * 86400, httponly=True, samesite="lax")
        return response

    def refused(request: Request, exc: DrimboxError, status: int | None = None) -> HTMLResponse:
        problems = list(exc.problems) if isinstance(exc, InvalidRequest) else []
        if status is None:
            status = 403 if isinstance(exc, Forbidden) else 400
        return render(request, "error.html", status=status, title_key="sc.invalid", message=str(exc),
                      details=problems, retry_url=None, back_url=None)

    @router.get("/screening/worklist", response_class=HTMLResponse, responses=_REFUSED)
    def worklist(request: Request, who: BrowserPrincipal) -> HTMLResponse:
        """The reader's worklist (refreshes itself while a case is being prefetched)."""
        now = service.store.now()
        cases = [CaseOut.of(r, now) for r in service.store.cases(reader_rpps=who.rpps)]
        cases.sort(key=lambda c: (c.status.value == "done", c.priority != "urgent", -c.age_s))
        waiting = any(not c.ready and c.status.value == "waiting" for c in cases)
        return render(request, "sc_worklist.html", title_key="sc.worklist.title", cases=cases,
                      refresh=5 if waiting else None)

    @router.get("/screening/cases/{case_id}", response_class=HTMLResponse, responses=_REFUSED)
    def case_page(case_id: str, request: Request, who: BrowserPrincipal) -> HTMLResponse:
        """One case: readiness, the viewer link, the reading form (or the recorded result)."""
        try:
            case = CaseOut.of(service.case(case_id, who), service.store.now())
        except DrimboxError as exc:
            return refused(request, exc, None if isinstance(exc, Forbidden) else 404)
        sides = ["R", "L"]
        single = service.case(case_id).assignment.get("single_breast")
        if single:
            sides = [single]
        return render(request, "sc_case.html", title_key="sc.case.title", case=case, sides=sides,
                      outcomes=[o.value for o in Outcome], today=date.today().isoformat())

    @router.get("/screening/cases/{case_id}/view", status_code=303, response_class=RedirectResponse,
                responses=_REDIRECT)
    async def view(case_id: str, request: Request, who: BrowserPrincipal) -> Response:
        """Open the case in the viewer (the current exam and its prior)."""
        token = actor_of(request, who).token
        try:
            url = await asyncio.to_thread(service.open_case, case_id, who, token)
        except DrimboxError as exc:
            return refused(request, exc)
        return RedirectResponse(url, status_code=303)

    @router.post("/screening/cases/{case_id}/reading", status_code=303, response_class=RedirectResponse,
                 responses=_REDIRECT)
    async def reading(case_id: str, request: Request, who: BrowserPrincipal) -> Response:
        """Record the L2 reading from the form."""
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            return refused(request, InvalidRequest("form too large"), 413)
        form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        sides = [s for s in ("R", "L") if f"{s}_category" in form]
        try:
            entry = L2ReadingIn.model_validate({
                "date": form.get("date") or date.today().isoformat(), "notes": form.get("notes", ""),
                "outcome": form.get("outcome"),
                "breasts": [{"laterality": s, "category": form.get(f"{s}_category"),
                             "density": form.get(f"{s}_density")} for s in sides]})
        except ValidationError as exc:
            problems = tuple(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            return refused(request, InvalidRequest("the reading is not valid", problems=problems))
        token = actor_of(request, who).token
        try:
            await asyncio.to_thread(service.record_reading, case_id, entry, who, token)
        except DrimboxError as exc:
            return refused(request, exc)
        return RedirectResponse(f"/screening/cases/{case_id}", status_code=303)

    @router.get("/screening/programme", response_class=HTMLResponse, responses=_REFUSED)
    def programme(request: Request, who: BrowserPrincipal) -> HTMLResponse:
        """The programme's dashboard and its requests."""
        try:
            service._require_programme()
        except DrimboxError as exc:
            return refused(request, exc)
        rows = service.store.requests()
        board = dashboard(rows, [r.rpps for r in service.config.readers])
        return render(request, "sc_programme.html", title_key="sc.programme.title", board=board,
                      median=_duration(board.turnaround_median_s), p90=_duration(board.turnaround_p90_s),
                      requests=[RequestOut.of(r) for r in reversed(rows)])

    @router.post("/screening/requests/{request_id}/assign", status_code=303, response_class=RedirectResponse,
                 responses=_REDIRECT)
    async def assign(request_id: str, request: Request, who: BrowserPrincipal) -> Response:
        """Assign round-robin from the dashboard."""
        token = actor_of(request, who).token
        try:
            await asyncio.to_thread(service.assign, request_id, None, who, token)
        except DrimboxError as exc:
            return refused(request, exc)
        return RedirectResponse("/screening/programme", status_code=303)

    @router.get("/screening/results", response_class=HTMLResponse, responses=_REFUSED)
    def results(request: Request, who: BrowserPrincipal) -> HTMLResponse:
        """The results that came back for this site's exams."""
        rows = service.results()
        for row in rows:
            service._audit(who, "screening.result.read", "success", study_uid=row.study_uid, patient_ins=row.ins,
                           detail=row.id)
        return render(request, "sc_results.html", title_key="sc.results.title",
                      results=[ResultOut.of(r) for r in rows])

    return router
