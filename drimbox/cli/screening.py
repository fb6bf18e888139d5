"""``drimbox screening``: second reads of screening mammography (a pilot under derogation), through the
running node's site face (``/api/screening``), as the practitioner whose token is given.

    drimbox screening request  --config site-a/node.toml --token T --study UID --ins INS --family … --given …
                               --birth-date 1960-05-01 --l1-rpps 10101010101 --right 1B --left 2B
    drimbox screening assign   --config site-a/node.toml --token T REQUEST_ID [--reader RPPS]
    drimbox screening worklist --config site-b/node.toml --token T
    drimbox screening dashboard --config site-a/node.toml --token T [--csv out.csv]

A refusal prints the node's reasons and exits with status 1.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from drimbox.cli.common import ConfigOption, err_console, load_node_settings, out_console

__all__ = ["screening_app"]

screening_app = typer.Typer(help="Screening mammography second reads (pilot under derogation).",
                            no_args_is_help=True)
TokenOption = Annotated[str, typer.Option("--token", envvar="DRIMBOX_TOKEN", help="The practitioner's bearer token.")]
_BREAST = re.compile(r"^([1-5])([A-Da-d])$")


def _client(config: Path, token: str) -> httpx.Client:
    settings = load_node_settings(config)
    base = f"http://{settings.http.host}:{settings.http.port}"
    return httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"})


def _answer(response: httpx.Response) -> Any:
    """The JSON body of a success; a refusal is printed (detail and reasons) and ends the command."""
    if response.status_code < 400:
        return response.json() if response.content else None
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text}
    detail = body.get("detail")
    if isinstance(detail, list):  # request validation: one line per field
        lines = [f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail]
        detail = "invalid request"
    else:
        lines = list(body.get("problems", []))
    err_console.print(f"[bold red]refused ({response.status_code}):[/] {detail}", highlight=False)
    for line in lines:
        err_console.print(f"  - {line}", highlight=False)
    raise typer.Exit(1)


def _breast(side: str, value: str) -> dict[str, Any]:
    match = _BREAST.match(value)
    if match is None:
        raise typer.BadParameter(f"{value!r}: ACR category 1-5 then density A-D, e.g. 2B", param_hint=f"--{side}")
    return {"laterality": side[0].upper(), "category": int(match.group(1)), "density": match.group(2).upper()}


@screening_app.command("request")
def request(
    config: ConfigOption, token: TokenOption,
    study: Annotated[str, typer.Option(help="Study Instance UID of the published exam.")],
    ins: Annotated[str, typer.Option(help="The woman's INS (15 characters).")],
    family: Annotated[str, typer.Option(help="Birth name.")],
    given: Annotated[str, typer.Option(help="First given name.")],
    birth_date: Annotated[str, typer.Option(help="YYYY-MM-DD.")],
    l1_rpps: Annotated[str, typer.Option(help="RPPS of the first reader.")],
    right: Annotated[str | None, typer.Option(help="Right breast: ACR category and density, e.g. 1B.")] = None,
    left: Annotated[str | None, typer.Option(help="Left breast: ACR category and density, e.g. 2C.")] = None,
    ins_oid: Annotated[str, typer.Option(help="OID of the INS.")] = "1.2.250.1.213.1.4.8",
    reading_date: Annotated[str | None, typer.Option("--date", help="Date of the L1 reading (default today).")] = None,
    notes: Annotated[str, typer.Option(help="Clinical notes of the L1 reading.")] = "",
    priority: Annotated[str, typer.Option(help="routine or urgent.")] = "routine",
) -> None:
    """Request a second read of a published screening mammography (at the programme's node)."""
    breasts = [_breast(side, value) for side, value in (("right", right), ("left", left)) if value]
    if not breasts:
        raise typer.BadParameter("give --right and/or --left", param_hint="--right")
    single = breasts[0]["laterality"] if len(breasts) == 1 else None
    body = {"study_uid": study, "priority": priority, "single_breast": single,
            "patient": {"ins": ins, "ins_oid": ins_oid, "family_name": family, "given_name": given,
                        "birth_date": birth_date},
            "l1": {"reader_rpps": l1_rpps, "date": reading_date or date.today().isoformat(), "notes": notes,
                   "breasts": breasts}}
    with _client(config, token) as client:
        created = _answer(client.post("/api/screening/requests", json=body))
    out_console.print(f"request {created['id']}: {created['status']} (KOS {created['kos_uid']})", highlight=False)


@screening_app.command("assign")
def assign(
    config: ConfigOption, token: TokenOption,
    request_id: Annotated[str, typer.Argument(help="The request's id.")],
    reader: Annotated[str | None, typer.Option(help="RPPS of the second reader (default: round-robin).")] = None,
) -> None:
    """Assign a request to a second reader and send it to their node."""
    with _client(config, token) as client:
        row = _answer(client.post(f"/api/screening/requests/{request_id}/assign", json={"reader_rpps": reader}))
    out_console.print(f"request {row['id']}: {row['status']}, reader RPPS {row['reader_rpps']}", highlight=False)


@screening_app.command("worklist")
def worklist(config: ConfigOption, token: TokenOption) -> None:
    """The caller's second reads on this node: status, age, priority, ready when prefetched."""
    with _client(config, token) as client:
        cases = _answer(client.get("/api/screening/worklist"))
    table = Table("case", "patient", "priority", "age (h)", "status", "ready", "priors")
    for case in cases:
        patient = case["patient"]
        table.add_row(case["id"], f"{patient['family_name']} {patient['given_name']}", case["priority"],
                      f"{case['age_s'] / 3600:.1f}", case["status"], "yes" if case["ready"] else "no",
                      str(len(case["priors"])))
    out_console.print(table)


@screening_app.command("dashboard")
def dashboard(
    config: ConfigOption, token: TokenOption,
    csv: Annotated[Path | None, typer.Option(help="Also write every request as CSV to this file.")] = None,
) -> None:
    """The programme's figures: counts by status, turnaround median and p90, load per reader."""
    with _client(config, token) as client:
        board = _answer(client.get("/api/screening/dashboard"))
        if csv is not None:
            response = client.get("/api/screening/dashboard.csv")
            if response.status_code >= 400:
                _answer(response)
            csv.write_bytes(response.content)
    out_console.print(board["pilot"], highlight=False)
    out_console.print(", ".join(f"{k}: {v}" for k, v in board["counts"].items()), highlight=False)

    def hours(value: float | None) -> str:
        return "—" if value is None else f"{value / 3600:.2f} h"

    out_console.print(f"turnaround over {board['completed']} result(s): median {hours(board['turnaround_median_s'])}, "
                      f"p90 {hours(board['turnaround_p90_s'])}; discordant {board['discordant']}", highlight=False)
    table = Table("reader (RPPS)", "open", "done")
    for reader in board["readers"]:
        table.add_row(reader["rpps"], str(reader["open"]), str(reader["done"]))
    out_console.print(table)
