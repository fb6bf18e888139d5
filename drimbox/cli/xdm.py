"""``drimbox xdm export`` / ``drimbox xdm import``: IHE XDM archives of one exam (F10).

``export`` zips an exam the consumer retrieved (``<retrieve.work_dir>/<kos_uid>/``, or any directory
of Part 10 files) into an XDM archive for a CD, a USB key or a mail; ``import`` judges an archive
(zip bombs, traversal, METADATA.XML, hashes) and stores its instances into the node's PACS through
the consumer's importer (identity reconciled, storage commitment awaited), as ``POST /api/xdm/import``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from drimbox.cli.common import ConfigOption, err_console, load_node_settings, out_console
from drimbox.config import NodeSettings
from drimbox.errors import ConfigError, InvalidRequest
from drimbox.retrieve.jobs import count_of
from drimbox.retrieve.xdm import XdmOrigin, export_xdm, read_xdm, source_from_directory, traits_from_contents

__all__ = ["register", "xdm_app"]

xdm_app = typer.Typer(help="IHE XDM archives (export a retrieved exam, import an archive).", no_args_is_help=True)

_REPORT_MIME = {".xml": "text/xml", ".pdf": "application/pdf", ".txt": "text/plain"}


def _work_dir(settings: NodeSettings) -> Path:
    return settings.retrieve.work_dir or settings.storage.data_dir / "retrieved"


@xdm_app.command("export")
def export(
    config: ConfigOption,
    directory: Annotated[Path, typer.Option("--dir", help="The retrieved exam's directory (Part 10 files).",
                                            exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The XDM zip to write.")],
    report: Annotated[Path | None, typer.Option("--report", help="The report (CDA .xml, .pdf) to include.",
                                                exists=True, dir_okay=False)] = None,
    contact: Annotated[str, typer.Option("--contact", help="Whom the recipient should contact (README).")] = "",
) -> None:
    """Write a retrieved exam as an IHE XDM zip (README.TXT, INDEX.HTM, IHE_XDM/SUBSET01/…)."""
    settings = load_node_settings(config)
    source = source_from_directory(directory)
    report_bytes = report_mime = None
    if report is not None:
        report_mime = _REPORT_MIME.get(report.suffix.lower())
        if report_mime is None:
            raise ConfigError(f"--report {report.name}: expected .xml (CDA), .pdf or .txt", key="report")
        report_bytes = report.read_bytes()
    partial = out.with_name(f".{out.name}.part")
    try:
        summary = export_xdm(source.exam, source.files, partial, origin=XdmOrigin.from_settings(settings,
                             contact=contact), report=report_bytes, report_mime=report_mime, kos=source.kos)
        partial.replace(out)  # a half-written archive never sits under the name the user asked for
    finally:
        partial.unlink(missing_ok=True)
    note = "" if source.kos else " (KOS made from the files: none was found beside them)"
    out_console.print(f"{out}: {summary.instances} instances, {summary.instance_bytes / 1e6:.1f} MB, "
                      f"KOS {summary.kos_uid}{note}", highlight=False, soft_wrap=True)
    if summary.missing:
        err_console.print(f"[yellow]{len(summary.missing)} instance(s) the KOS references are not in {directory}[/]")


def _importer(settings: NodeSettings) -> tuple[Any, Any]:
    """The consumer's importer and the PACS client it uses (imported lazily: the F8 module)."""
    from drimbox.pacs import MoveMediator, PacsClient

    try:
        from drimbox.retrieve.importer import StudyImporter  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ConfigError("this build has no importer (drimbox.retrieve.importer)", key="retrieve") from exc
    mediator = MoveMediator(quarantine_dir=settings.storage.quarantine_dir,
                            straggler_timeout_s=settings.dimse.move_quarantine_s)
    pacs = PacsClient(local=settings.local, remote=settings.pacs, dimse=settings.dimse, mediator=mediator)
    return StudyImporter(settings, pacs), pacs


@xdm_app.command("import")
def import_(
    config: ConfigOption,
    archive: Annotated[Path, typer.Argument(help="The XDM zip.", exists=True, dir_okay=False)],
    ins: Annotated[str | None, typer.Option("--ins", help="The patient's INS, when the archive carries none.")] = None,
    ins_oid: Annotated[str | None, typer.Option("--ins-oid", help="OID of the INS (default: INS-NIR).")] = None,
    local_id: Annotated[str | None, typer.Option("--local-id", help="The patient's IPP at this site.")] = None,
    check_only: Annotated[bool, typer.Option("--check", help="Judge and list the archive, import nothing.")] = False,
) -> None:
    """Import an IHE XDM zip into the node's PACS (refused with every problem listed if malformed)."""
    settings = load_node_settings(config)
    root = _work_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="xdm-import-", dir=root))
    try:
        try:
            contents = read_xdm(archive, scratch)
        except InvalidRequest as exc:
            err_console.print(f"[bold red]refused:[/] {archive.name}", highlight=False, soft_wrap=True)
            for problem in exc.problems:
                err_console.print(f"  - {problem}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from exc
        for warning in contents.warnings:
            err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        out_console.print(f"{archive.name}: {len(contents.instances)} instances, KOS {contents.kos_uid or '-'}, "
                          f"report {contents.report_mime or '-'}, patient {contents.patient_id}",
                          highlight=False, soft_wrap=True)
        if check_only:
            return
        traits = traits_from_contents(contents, ins=ins, ins_oid=ins_oid, local_id=local_id,
                                      local_issuer=settings.retrieve.local_issuer or None)
        importer, pacs = _importer(settings)
        try:
            outcome = importer.import_study(sorted(contents.instances.values()), traits)
        finally:
            pacs.close()
        committed = count_of(getattr(outcome, "committed", 0))
        out_console.print(f"imported {count_of(getattr(outcome, 'stored', 0))}, confirmed by storage commitment "
                          f"{committed} of {len(contents.instances)}", highlight=False, soft_wrap=True)
        if committed != len(contents.instances):
            raise typer.Exit(1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def register(app: typer.Typer) -> None:
    """Add ``drimbox xdm …`` to the root app."""
    app.add_typer(xdm_app, name="xdm")
