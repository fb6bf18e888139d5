"""``drimbox audit verify`` / ``drimbox audit export``: check the node's audit trail, report a patient's accesses.

``verify`` checks the hash chain of ``<data_dir>/audit.sqlite`` against the signed checkpoints in
``<data_dir>/audit.checkpoints.jsonl`` with the node's public key (``tls.cert_file``, or ``--public-key``)
and exits 0 when intact, 1 with the findings listed when not — so a cron job or a monitoring probe can
alert on it. ``export`` writes the events since a date (optionally of one patient, by INS) as a FHIR R4
Bundle of AuditEvents or as JSON lines; it reads the database read-only and never writes to it.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from drimbox.cli.common import ConfigOption, err_console, load_node_settings, out_console
from drimbox.config import NodeSettings
from drimbox.errors import ConfigError
from drimbox.trust.audit import checkpoints_path_for, read_records
from drimbox.trust.audit_fhir import fhir_audit_event, fhir_bundle, patient_records
from drimbox.trust.audit_verify import load_verify_key, verify_audit

__all__ = ["audit_app", "register"]

audit_app = typer.Typer(help="The node's tamper-evident audit trail (verify, export).", no_args_is_help=True)


def _db_path(settings: NodeSettings) -> Path:
    return settings.storage.data_dir / "audit.sqlite"


def _since(value: str) -> datetime:
    """A date (``2026-01-01``) or an ISO datetime; without a zone it is UTC (the trail's clock)."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"--since {value!r}: expected a date (2026-01-01) or an ISO datetime", key="since") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@audit_app.command("verify")
def verify(
    config: ConfigOption,
    public_keys: Annotated[list[Path] | None, typer.Option(
        "--public-key", help="PEM certificate or public key that signs the checkpoints (default: tls.cert_file); "
        "repeat it for the keys before a certificate renewal.", exists=True, dir_okay=False)] = None,
) -> None:
    """Check the hash chain and the signed checkpoints; exit 1 and list the findings if tampered."""
    settings = load_node_settings(config)
    key_files = public_keys or ([settings.tls.cert_file] if settings.tls.cert_file is not None else [])
    if not key_files:
        raise ConfigError("no key to verify the checkpoints: set tls.cert_file or pass --public-key",
                          key="tls.cert_file")
    db = _db_path(settings)
    if not db.exists():
        raise ConfigError(f"{db}: no audit database", key="storage.data_dir")
    report = verify_audit(db, checkpoints_path_for(db), [load_verify_key(path) for path in key_files])
    summary = (f"{report.records} records (seq {report.first_seq}..{report.last_seq}), {report.checkpoints} "
               f"signed checkpoints, last at seq {report.last_checkpoint_seq}, {report.uncovered} not yet covered")
    if report.ok:
        out_console.print(f"audit trail intact: {summary}", highlight=False, soft_wrap=True)
        return
    err_console.print(f"[bold red]audit trail TAMPERED[/]: {len(report.findings)} findings; {summary}",
                      highlight=False, soft_wrap=True)
    for finding in report.findings:
        out_console.print(str(finding), highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(1)


@audit_app.command("export")
def export(
    config: ConfigOption,
    since: Annotated[str, typer.Option("--since", help="First day (2026-01-01) or instant of the report (UTC).")],
    patient: Annotated[str | None, typer.Option("--patient", help="Only the events about this patient (INS).")] = None,
    fmt: Annotated[Literal["fhir", "jsonl"], typer.Option("--format", help="fhir: one Bundle; jsonl: one "
                                                          "AuditEvent per line.")] = "fhir",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Export the audit events since a date (a patient's access report) as FHIR AuditEvents."""
    settings = load_node_settings(config)
    start = _since(since)
    db = _db_path(settings)
    if not db.exists():
        raise ConfigError(f"{db}: no audit database", key="storage.data_dir")
    records = read_records(db)
    if patient is not None:  # linked by study/KOS over the whole trail, then cut at --since
        records = patient_records(records, patient)
    records = [r for r in records if r.event().at >= start]
    if fmt == "fhir":
        text = json.dumps(fhir_bundle(records, node=settings.name), ensure_ascii=False, indent=2) + "\n"
    else:
        text = "".join(json.dumps(fhir_audit_event(r.event(), node=settings.name, seq=r.seq, record_hash=r.hash),
                                  ensure_ascii=False) + "\n" for r in records)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        err_console.print(f"{len(records)} audit events written to {out}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``drimbox audit …`` to the root app."""
    app.add_typer(audit_app, name="audit")
