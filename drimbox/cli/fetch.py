"""``drimbox fetch``: a patient's exams from the network (F6, F7), optionally imported into the PACS (F8).

Acts as the node of ``--config`` with the practitioner's token: looks the patient up in the registry
by INS, retrieves each chosen exam from its source node into ``retrieve.work_dir/<kos_uid>/`` (the
place the node's own jobs use, so a second run resumes and the retention sweep covers it), with a
progress bar per series and one for the total (MB/s, ETA), reports every difference from the KOS,
and with ``--import`` imports the study and waits for the PACS's storage commitment.

The storage commitment report comes to the node's DIMSE address: when the node is running there,
the report reaches the node, not this command, and the import is shown unconfirmed — import through
the node (its study page) in that case, or stop it first.

Exit status: 0 when every exam was retrieved complete (and, with ``--import``, committed), 1 otherwise.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from drimbox.cli.common import ConfigOption, err_console, load_node_settings, out_console
from drimbox.config import NodeSettings
from drimbox.errors import ConfigError, DrimboxError, ImportFailed
from drimbox.retrieve.model import Actor, Exam, PatientTraits, RetrievalReport, SeriesRef
from drimbox.retrieve.retention import INDEX_NAME, RetentionRecord, write_index

if TYPE_CHECKING:
    from drimbox.retrieve.importer import ImportReport

__all__ = ["fetch", "register"]

INS_OIDS = ("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11")
"""INS-NIR, INS-NIA, INS-NIR test, demo: searched in turn when ``--ins-oid`` is not given."""


def _actor(settings: NodeSettings, token: str) -> Actor:
    """The practitioner the token names (verified as the node would), forwarded to the sources."""
    from drimbox.node import build_verifier

    verifier = build_verifier(settings)
    if verifier is None:
        return Actor(subject="developer", rpps=None, role=None, display_name=None, token=token)
    principal = verifier.verify(token)
    return Actor(subject=principal.subject, rpps=principal.rpps, role=principal.role,
                 display_name=principal.display_name, token=token)


class _Bars:
    """RetrievalProgress on rich bars: one per series and a total, in bytes (sizes estimated from the
    instances received so far, so MB/s and ETA mean something before a series ends)."""

    def __init__(self, progress: Progress, exam: Exam) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._expected = exam.instance_count
        self._received = 0
        self._bytes = 0
        self._series: dict[str, tuple[TaskID, int, int]] = {}
        self._total = progress.add_task(f"[bold]{exam.description or exam.study_uid[-20:]}", total=None,
                                        instances=f"0/{self._expected}")

    def _estimate(self, count: int) -> int | None:
        return int(self._bytes / self._received * count) if self._received else None

    def series_started(self, series: SeriesRef) -> None:
        with self._lock:
            label = f"  {series.modality or ''} …{series.series_uid[-12:]}"
            task = self._progress.add_task(label, total=self._estimate(len(series.instances)),
                                           instances=f"0/{len(series.instances)}")
            self._series[series.series_uid] = (task, 0, 0)

    def instance_received(self, series: SeriesRef, sop_instance_uid: str, size: int) -> None:
        with self._lock:
            self._received += 1
            self._bytes += size
            task, count, done = self._series.get(series.series_uid, (None, 0, 0))
            count, done = count + 1, done + size
            if task is not None:
                self._series[series.series_uid] = (task, count, done)
                left = len(series.instances) - count
                self._progress.update(task, completed=done, total=done + (self._estimate(left) or 0),
                                      instances=f"{count}/{len(series.instances)}")
            self._progress.update(self._total, completed=self._bytes,
                                  total=self._bytes + (self._estimate(self._expected - self._received) or 0),
                                  instances=f"{self._received}/{self._expected}")

    def series_finished(self, series: SeriesRef, error: str | None) -> None:
        with self._lock:
            task, _count, done = self._series.get(series.series_uid, (None, 0, 0))
            if task is not None:
                self._progress.update(task, total=done, completed=done)
                if error:
                    self._progress.update(task, description=f"[red]  …{series.series_uid[-12:]} {error[:60]}")


def _columns() -> tuple[Any, ...]:
    return (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[instances]}"),
            DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())


def _exam_table(exams: list[Exam]) -> Table:
    table = Table(title="Exams in the network", show_lines=False)
    for column in ("date", "modality", "description", "source", "series", "instances", "Study UID"):
        table.add_column(column)
    for exam in exams:
        table.add_row(exam.performed.strftime("%Y-%m-%d") if exam.performed else "?", "/".join(exam.modalities),
                      exam.description, exam.source_site, str(exam.series_count), str(exam.instance_count),
                      exam.study_uid)
    return table


def _say_retrieval(report: RetrievalReport) -> bool:
    exam = report.exam
    mb = report.bytes / 1e6
    speed = mb / report.seconds if report.seconds > 0 else 0.0
    colour = "green" if report.complete else "red"
    out_console.print(f"[{colour}]{len(report.received)}/{exam.instance_count} instance(s)[/], {mb:.1f} MB in "
                      f"{report.seconds:.1f} s ({speed:.1f} MB/s) → {report.directory}")
    for label, uids in (("referenced by the KOS but not received", report.missing),
                        ("received but not in the KOS (discarded)", report.unexpected),
                        ("not as the KOS says (discarded)", report.mismatched)):
        if uids:
            shown = ", ".join(uids[:5]) + ("…" if len(uids) > 5 else "")
            out_console.print(f"[red]KOS mismatch:[/] {len(uids)} instance(s) {label}: {shown}")
    for error in report.errors:
        out_console.print(f"[red]error:[/] {error}")
    return report.complete


def _say_import(report: ImportReport) -> bool:
    colour = "green" if report.done else "red"
    out_console.print(f"[{colour}]import: {len(report.stored)} stored, {len(report.committed)} committed by the "
                      f"PACS, {len(report.uncommitted)} not confirmed, {len(report.failed)} refused[/] "
                      f"({report.bytes / 1e6:.1f} MB in {report.seconds:.1f} s; storage commitment transaction "
                      f"{report.transaction_uid or '-'})")
    if report.changed:
        out_console.print(f"identity reconciled: {', '.join(report.changed)} (originals kept in "
                          "OriginalAttributesSequence)")
    for problem in report.problems:
        out_console.print(f"[yellow]{problem}[/]")
    return report.done


def fetch(
    config: ConfigOption,
    ins: Annotated[str, typer.Option("--ins", help="The patient's INS (15 characters).")],
    ins_oid: Annotated[str | None, typer.Option("--ins-oid", help="The INS namespace OID; default: NIR, NIA, "
                                                "test and demo namespaces in turn.")] = None,
    study: Annotated[list[str] | None, typer.Option("--study", help="Only this Study Instance UID (repeatable); "
                                                    "default: every exam found.")] = None,
    do_import: Annotated[bool, typer.Option("--import", help="Import into the site's PACS, with storage "
                                            "commitment.")] = False,
    local_id: Annotated[str | None, typer.Option("--local-id", help="The patient's local IPP (identity rule "
                                                 "'local').")] = None,
    local_issuer: Annotated[str | None, typer.Option("--local-issuer", help="Issuer of --local-id; default "
                                                     "retrieve.local_issuer.")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="DRIMBOX_TOKEN", show_envvar=True,
                                              help="The practitioner's bearer token.")] = None,
) -> None:
    """Find a patient's exams in the registry, retrieve them from their source nodes, optionally import them."""
    settings = load_node_settings(config)
    if not token:
        raise ConfigError("a practitioner's token is needed: --token or DRIMBOX_TOKEN", key="token")
    ins = ins.strip().upper()
    actor = _actor(settings, token)
    from drimbox.retrieve.directory import RegistryDirectory
    from drimbox.retrieve.transfer import StudyRetriever
    from drimbox.trust.peers import HostListPolicy

    directory = RegistryDirectory.from_settings(settings)
    try:
        found: dict[str, tuple[Exam, str]] = {}
        for oid in ([ins_oid] if ins_oid else INS_OIDS):
            # Only the INS and its OID matter to ITI-18; the other traits are not known here.
            query = PatientTraits(ins=ins, ins_oid=oid, birth_name="", first_given_name="", birth_date=date.min,
                                  sex="U")
            record = directory.patient_record(query, actor)
            for problem in record.problems:
                err_console.print(f"[yellow]registry: {problem}[/]")
            for exam in record.exams:
                found.setdefault(exam.kos_uid, (exam, oid))
    finally:
        directory.close()
    exams = [e for e, _ in found.values() if not study or e.study_uid in study]
    if not found:
        err_console.print(f"no exam published for INS {ins}")
        raise typer.Exit(1)
    out_console.print(_exam_table([e for e, _ in found.values()]))
    if not exams:
        err_console.print(f"none of the exams found is study {', '.join(study or [])}")
        raise typer.Exit(1)

    work_dir = settings.retrieve.work_dir or settings.storage.data_dir / "retrieved"
    retriever = StudyRetriever(settings, HostListPolicy(settings.peers.hosts))
    importer = None
    ok = True
    try:
        for exam in exams:
            target = work_dir / exam.kos_uid
            out_console.rule(f"{exam.description or exam.study_uid} — KOS {exam.kos_uid}")
            try:
                with Progress(*_columns(), console=err_console) as progress:
                    report = retriever.retrieve(exam, actor, target, progress=_Bars(progress, exam))
            except DrimboxError as exc:
                out_console.print(f"[red]retrieval failed:[/] {type(exc).__name__}: {exc}")
                ok = False
                continue
            write_index(target / INDEX_NAME, RetentionRecord(exam.kos_uid, exam.study_uid, time.time()))
            complete = _say_retrieval(report)
            ok = ok and complete
            if not do_import:
                continue
            if not complete:
                out_console.print("[red]not imported: the retrieval is incomplete[/]")
                continue
            if importer is None:
                from drimbox.retrieve.importer import StudyImporter

                importer = StudyImporter(settings)
            traits = PatientTraits(ins=ins, ins_oid=found[exam.kos_uid][1], birth_name="", first_given_name="",
                                   birth_date=date.min, sex="U", local_id=local_id, local_issuer=local_issuer)
            try:
                outcome = importer.import_study(sorted(report.received.values()), traits, source=exam.source_site)
            except ImportFailed as exc:
                out_console.print(f"[red]import failed:[/] {exc}")
                ok = False
                continue
            ok = _say_import(outcome) and ok
    finally:
        retriever.close()
        if importer is not None:
            importer.close()
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``fetch`` to the root app."""
    app.command("fetch")(fetch)
