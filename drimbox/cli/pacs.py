"""``drimbox pacs …``: poke the site's PACS through the node's DIMSE bridge."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from drimbox.cli.common import ConfigOption, err_console, load_node_settings, out_console
from drimbox.config import NodeSettings
from drimbox.errors import ConfigError
from drimbox.pacs import MoveMediator, NodeScp, PacsClient, QueryLevel

__all__ = ["pacs_app"]

pacs_app = typer.Typer(help="Talk to the site's PACS over DIMSE (C-ECHO, C-FIND, C-GET/C-MOVE, C-STORE).",
                       no_args_is_help=True)

_DEFAULT_COLUMNS = {
    "STUDY": ("StudyDate", "PatientID", "PatientName", "AccessionNumber", "ModalitiesInStudy", "StudyDescription",
              "StudyInstanceUID"),
    "SERIES": ("Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"),
    "IMAGE": ("InstanceNumber", "SOPClassUID", "Rows", "Columns", "SOPInstanceUID"),
}


@contextmanager
def _client(settings: NodeSettings, *, with_scp: bool = False) -> Iterator[PacsClient]:
    # A one-shot command reports failures itself, as one line: pynetdicom's own error logs would
    # only repeat them.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    mediator = MoveMediator(quarantine_dir=settings.storage.quarantine_dir,
                            straggler_timeout_s=settings.dimse.move_quarantine_s)
    client = PacsClient(local=settings.local, remote=settings.pacs, dimse=settings.dimse, mediator=mediator)
    scp = NodeScp(local=settings.local, dimse=settings.dimse, storage=settings.storage, mediator=mediator)
    if with_scp:
        scp.start()
    try:
        yield client
    finally:
        if with_scp:
            scp.stop()
        client.close()


def _parse_keys(keys: list[str]) -> dict[str, str]:
    query: dict[str, str] = {}
    for item in keys:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"-k {item!r}: expected KEYWORD=VALUE (e.g. -k PatientName='DUPONT*')", key="k")
        query[name.strip()] = value
    return query


@pacs_app.command("echo")
def echo(config: ConfigOption) -> None:
    """C-ECHO the PACS."""
    settings = load_node_settings(config)
    with _client(settings) as client:
        client.echo()
    out_console.print(f"C-ECHO {settings.pacs.aet}@{settings.pacs.host}:{settings.pacs.port}: [green]success[/]")


@pacs_app.command("find")
def find(
    config: ConfigOption,
    level: Annotated[str, typer.Option(help="STUDY, SERIES or IMAGE.")] = "STUDY",
    key: Annotated[list[str] | None, typer.Option("-k", "--key", help="KEYWORD=VALUE (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="DICOM JSON, one object per match.")] = False,
) -> None:
    """C-FIND (Study Root) with matching keys; wildcards `*`/`?` and date ranges `A-B` allowed."""
    try:
        query_level = QueryLevel(level.upper())
    except ValueError as exc:
        raise ConfigError(f"--level: one of STUDY, SERIES, IMAGE, not {level!r}", key="level") from exc
    settings = load_node_settings(config)
    query = _parse_keys(key or [])
    columns = _DEFAULT_COLUMNS[query_level.value]
    for column in columns:
        query.setdefault(column, "")
    table = Table(*columns)
    with _client(settings) as client:
        for match in client.find(query_level, query):
            if as_json:
                out_console.print_json(json.dumps(match.to_json_dict()))
            else:
                table.add_row(*(str(match.get(c, "")) for c in columns))
    if not as_json:
        out_console.print(table)


@pacs_app.command("get")
def get(
    config: ConfigOption,
    study: Annotated[str, typer.Argument(help="Study Instance UID.")],
    dest: Annotated[Path, typer.Option(help="Directory the instances are written to.")] = Path("."),
    series: Annotated[str | None, typer.Option(help="Only this Series Instance UID.")] = None,
    move: Annotated[bool, typer.Option("--move", help="C-MOVE to this node's SCP instead of C-GET.")] = False,
) -> None:
    """Retrieve a study (or one series) to disk, with a progress bar."""
    settings = load_node_settings(config)
    with _client(settings, with_scp=move) as client:
        walk = client.walk_study(study)
        selected = [s for s in walk.series if series is None or s.series_instance_uid == series]
        total = sum(len(s.instances) for s in selected)
        retrieve = client.move if move else client.get
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        received = 0
        with Progress(*columns, console=err_console) as progress:
            task = progress.add_task("C-MOVE" if move else "C-GET", total=total)
            for instance in retrieve(study, series_uid=series, dest=dest, walk=walk):
                received += instance.size
                progress.update(task, advance=1, description=f"{instance.sop_instance_uid[-12:]}")
    out_console.print(f"{total} instances, {received / 1e6:.1f} MB in {dest}")


@pacs_app.command("store")
def store(
    config: ConfigOption,
    files: Annotated[list[Path], typer.Argument(help="DICOM files or directories (recursed).")],
) -> None:
    """C-STORE files to the PACS."""
    settings = load_node_settings(config)
    paths = [p for f in files for p in (sorted(x for x in f.rglob("*") if x.is_file()) if f.is_dir() else [f])]
    with _client(settings) as client:
        report = client.store(paths)
    out_console.print(report)
