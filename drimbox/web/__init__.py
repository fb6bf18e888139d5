"""The node's web pages (site face): the contextual call (F5), the patient's study page (F6) and its
actions (report, view, import, XDM export), and the DMP link to an exam this site published.

Plain HTML from Jinja2 templates, French by default and English on request; no JavaScript.
See :mod:`drimbox.web.pages` for the routers and how an app includes them.
"""

from drimbox.web.calls import ContextualCalls, StoredCall
from drimbox.web.ins import ConsentNotGiven, ContextualCall, ContextualCallInvalid, Problem, parse_contextual_call
from drimbox.web.pages import (
    CSS_PATH,
    ImportLauncher,
    ImportProgress,
    PublishedStudy,
    RemoteViewer,
    SessionAccess,
    XdmExport,
    public_router,
    viewer_url,
    web_router,
)
from drimbox.web.sources import NotRetrieved, published_study_lookup, xdm_exporter

__all__ = [
    "CSS_PATH",
    "ConsentNotGiven",
    "ContextualCall",
    "ContextualCallInvalid",
    "ContextualCalls",
    "ImportLauncher",
    "ImportProgress",
    "NotRetrieved",
    "Problem",
    "PublishedStudy",
    "RemoteViewer",
    "SessionAccess",
    "StoredCall",
    "XdmExport",
    "parse_contextual_call",
    "public_router",
    "published_study_lookup",
    "viewer_url",
    "web_router",
    "xdm_exporter",
]
