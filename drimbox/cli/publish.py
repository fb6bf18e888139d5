"""``drimbox publish`` (manual publication of an exam) and ``drimbox outbox`` (the publication queue)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from drimbox.cli.common import ConfigOption, load_node_settings, out_console

__all__ = ["outbox_app", "register"]

outbox_app = typer.Typer(help="The publication queue: pending, failed and dead-letter jobs.",
                         invoke_without_command=True)

_OPEN_STATES = ("pending", "in_flight", "failed", "dead_letter")


def publish(
    config: ConfigOption,
    accession: Annotated[str | None, typer.Option(help="Accession number of the exam.")] = None,
    study: Annotated[str | None, typer.Option(help="Study Instance UID of the exam.")] = None,
) -> None:
    """Queue a (re)publication of an exam whose report the node has received; the node's worker sends it."""
    from drimbox.errors import ConfigError
    from drimbox.publish.errors import NothingToPublish
    from drimbox.publish.jobs import JobKind
    from drimbox.publish.service import open_outbox

    if (accession is None) == (study is None):
        raise ConfigError("give exactly one of --accession or --study")
    settings = load_node_settings(config)
    outbox = open_outbox(settings)
    try:
        exams = outbox.exams_for_study(study) if study else outbox.exams_for_accession(accession or "")
        if not exams or all(e.report is None for e in exams):
            named = f"study {study}" if study else f"accession {accession}"
            raise NothingToPublish(f"no report received for {named}: a KOS needs the report's patient and authors")
        for exam in exams:
            if exam.report is None:
                continue
            job_id = outbox.enqueue_exam(JobKind.REFRESH, exam.study_instance_uid, exam.accession_number,
                                         detail={"requested_by": "drimbox publish"})
            out_console.print(f"queued job {job_id}: exam {exam.accession_number} / {exam.study_instance_uid}")
    finally:
        outbox.close()


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


@outbox_app.callback()
def list_jobs(
    ctx: typer.Context,
    config: ConfigOption,
    all_jobs: Annotated[bool, typer.Option("--all", help="Include done jobs.")] = False,
    state: Annotated[list[str] | None, typer.Option(help="Only jobs in this state (repeatable).")] = None,
) -> None:
    """List the jobs still to publish, failing, or waiting for an operator (dead letters)."""
    ctx.obj = config
    if ctx.invoked_subcommand is not None:
        return
    from drimbox.publish.jobs import JobState
    from drimbox.publish.service import open_outbox

    settings = load_node_settings(config)
    outbox = open_outbox(settings)
    try:
        states = [JobState(s) for s in (state or ([] if all_jobs else list(_OPEN_STATES)))]
        jobs = outbox.jobs(states)
        counts = outbox.counts()
    finally:
        outbox.close()
    table = Table(title=f"outbox {outbox.path}")
    for column in ("id", "kind", "state", "tries", "accession", "study", "version", "next try", "last error / outcome"):
        table.add_column(column)
    for job in jobs:
        table.add_row(str(job.id), job.kind.value, job.state.value, str(job.attempts), job.accession_number,
                      job.study_instance_uid, str(job.report_version or ""),
                      _when(job.not_before) if job.state.value in ("pending", "failed") else "",
                      job.last_error or job.outcome or "")
    out_console.print(table)
    out_console.print(", ".join(f"{s.value}: {n}" for s, n in sorted(counts.items())) or "empty")


@outbox_app.command("retry")
def retry(ctx: typer.Context, job_id: Annotated[int, typer.Argument(help="The job to send back to pending.")]) -> None:
    """Send a failed or dead-letter job back to pending (after the operator fixed the cause)."""
    from drimbox.errors import ConfigError
    from drimbox.publish.service import open_outbox

    outbox = open_outbox(load_node_settings(ctx.obj))
    try:
        if not outbox.retry(job_id):
            raise ConfigError(f"job {job_id} is not failed or dead-letter (see drimbox outbox --all)")
    finally:
        outbox.close()
    out_console.print(f"job {job_id} is pending again")


def register(app: typer.Typer) -> None:
    """Add ``publish`` and ``outbox`` to the root app."""
    app.command("publish")(publish)
    app.add_typer(outbox_app, name="outbox")
