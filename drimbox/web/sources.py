"""Adapters from the node's parts to what the pages call: the DMP link's look-up on the source node
(which study a KOS this node publishes shows) and the XDM export of a retrieved exam."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from drimbox.errors import InvalidRequest
from drimbox.retrieve.model import Actor, Exam, ExamDirectory, PatientTraits
from drimbox.trust.scope import PublishedManifests, parse_scope

if TYPE_CHECKING:
    from drimbox.retrieve.xdm import XdmOrigin

__all__ = ["NotRetrieved", "published_study_lookup", "xdm_exporter"]

log = structlog.get_logger(__name__)


def published_study_lookup(manifests: PublishedManifests) -> Callable[[str], str | None]:
    """``kos_uid → Study Instance UID`` while ``manifests`` (the publication outbox) holds it as its
    exam's current, not withdrawn KOS — the same rule as the network face's manifest scope, so the
    link stops working the moment the exam is withdrawn or replaced. Several studies (a KOS may
    reference more than one) come comma-separated, as OHIF's ``StudyInstanceUIDs`` takes them.
    """

    def lookup(kos_uid: str) -> str | None:
        data = manifests.published_kos(kos_uid)
        if data is None:
            return None
        try:
            studies = parse_scope(kos_uid, data).study_uids
        except Exception as exc:  # a stored KOS the parser rejects: no link rather than a 500
            log.error("published KOS unreadable", kos_uid=kos_uid, error=f"{type(exc).__name__}: {exc}")
            return None
        return ",".join(sorted(studies)) or None

    return lookup


class NotRetrieved(InvalidRequest):
    """The exam is not on this node yet: an XDM export needs its instances (import it first)."""


def xdm_exporter(*, work_dir: Path, origin: XdmOrigin, spool_dir: Path,
                 directory: ExamDirectory | None = None) -> Callable[[Exam, PatientTraits, Actor], Path]:
    """The page's XDM export over :func:`drimbox.retrieve.xdm.export_xdm`: the exam's instances as the
    retriever left them in ``<work_dir>/<kos_uid>/``, the exam entry and traits the page knows, and
    the report read again from the registry (``directory``) so the archive carries it.

    Returns a temporary zip in ``spool_dir``, which the page deletes once sent.
    """
    from drimbox.retrieve.xdm import exam_from_directory, export_xdm

    def export(exam: Exam, traits: PatientTraits, actor: Actor) -> Path:
        where = work_dir / exam.kos_uid
        if not where.is_dir():
            raise NotRetrieved(f"exam {exam.kos_uid} has not been retrieved to this node")
        _, files, kos = exam_from_directory(where)
        report = directory.document(exam.report, actor) if directory is not None and exam.report else None
        spool_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="xdm-", suffix=".zip", dir=spool_dir)
        os.close(handle)
        path = Path(name)
        try:
            export_xdm(exam, files, path, origin=origin, traits=traits, report=report,
                       report_mime=exam.report.mime_type if report is not None and exam.report else None, kos=kos)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    return export
