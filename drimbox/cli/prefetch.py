"""``drimbox prefetch``: bring studies into the node cache, as ``POST /api/prefetch`` does.

It acts on the node's cache directly (the files and index a running node serves from), through the
same backend the node uses. With a PACS that has no C-GET, the instances come by C-MOVE to the
node's own SCP, which this command then runs itself: stop the node first in that case.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from pydicom import Dataset
from pydicom.tag import Tag
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from dicomweb_gateway import GatewayError, InstanceFile, QueryLevel, SearchQuery
from dicomweb_gateway.uids import is_valid_uid
from drimbox.cli.common import ConfigOption, err_console, load_node_settings, out_console
from drimbox.config import NodeSettings
from drimbox.errors import ConfigError
from drimbox.pacs import MoveMediator, NodeScp
from drimbox.stores import DicomwebService, backend_kind, build_dicomweb, prefetch_study

__all__ = ["prefetch", "register"]


@contextmanager
def _service(settings: NodeSettings) -> Iterator[DicomwebService]:
    mediator = MoveMediator(quarantine_dir=settings.storage.quarantine_dir,
                            straggler_timeout_s=settings.dimse.move_quarantine_s)  # fmt: skip
    needs_scp = backend_kind(settings) == "dimse" and not settings.pacs.supports_c_get
    scp = NodeScp(local=settings.local, dimse=settings.dimse, storage=settings.storage, mediator=mediator)
    service = build_dicomweb(settings, mediator=mediator)
    if needs_scp:
        scp.start()
    try:
        yield service
    finally:
        if needs_scp:
            scp.stop()
        service.close()


def _instance_count(service: DicomwebService, study_uid: str) -> int | None:
    """How many instances the PACS lists for the study (for the progress bar; ``None`` if unknown)."""
    matching = Dataset()
    matching.StudyInstanceUID = study_uid
    query = SearchQuery(QueryLevel.IMAGE, matching, (Tag("SOPInstanceUID"),), study_uid=study_uid)
    try:
        return sum(1 for _ in service.store.search(query))
    except GatewayError:
        return None


def prefetch(
    config: ConfigOption,
    studies: Annotated[list[str], typer.Argument(help="Study Instance UIDs.", show_default=False)],
) -> None:
    """Retrieve studies from the PACS into the node cache (skipped when already complete there)."""
    bad = [uid for uid in studies if not is_valid_uid(uid)]
    if bad:
        raise ConfigError(f"not a Study Instance UID: {bad[0]!r}", key="studies")
    settings = load_node_settings(config)
    unique = list(dict.fromkeys(studies))
    failed = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[size]}"),
               TimeElapsedColumn())  # fmt: skip
    with _service(settings) as service, Progress(*columns, console=err_console) as progress:
        for uid in unique:
            task = progress.add_task(f"…{uid[-24:]}", total=_instance_count(service, uid), size="")
            received = 0
            started = time.monotonic()

            def advance(instance: InstanceFile, task: TaskID = task, started: float = started) -> None:
                nonlocal received
                received += instance.size
                rate = received / max(time.monotonic() - started, 1e-3) / 1e6
                progress.update(task, advance=1, size=f"{received / 1e6:.1f} MB, {rate:.0f} MB/s")

            try:
                cached = prefetch_study(service.store, uid, advance)
            except GatewayError as exc:
                failed += 1
                progress.update(task, description=f"[red]…{uid[-24:]} failed[/]")
                progress.console.print(f"[red]{uid}[/]: {exc}", highlight=False)
                continue
            note = "already in the cache" if cached else "retrieved"
            progress.update(task, description=f"[green]…{uid[-24:]}[/] {note}")
    out_console.print(f"{len(unique) - failed} of {len(unique)} studies in the cache")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``drimbox prefetch`` to the root app."""
    app.command("prefetch")(prefetch)
