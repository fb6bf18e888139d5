"""``drimbox certify``: run the conformance scenarios against any node and write the reports."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from drimbox.certify.catalogue import all_scenarios
from drimbox.certify.model import Family, Profile, Verdict
from drimbox.certify.probe import RunOptions
from drimbox.certify.reports import write_html, write_junit
from drimbox.certify.runner import run_scenarios
from drimbox.certify.target import Target, TokenSource, parse_dimse, parse_host_port, target_from_endpoints
from drimbox.cli.common import out_console
from drimbox.errors import ConfigError

__all__ = ["certify", "register"]

_STYLE = {Verdict.PASS: "green", Verdict.FAIL: "bold red", Verdict.NOT_APPLICABLE: "dim"}


def _explicit_target(node: str | None, network_node: str | None, registry: str | None, pacs: str | None,
                     dimse: str | None, hl7: str | None, profiles: frozenset[Profile]) -> Target:
    if node is None and network_node is None:
        raise ConfigError("give --endpoints FILE or --node URL", key="node")
    base = registry.rstrip("/") if registry else None
    return Target(
        name=node or network_node or "node", profiles=profiles, dicomweb=node, network_dicomweb=network_node,
        registry_fhir=f"{base}/fhir" if base else None, registry_xds=f"{base}/xds/registry" if base else None,
        repository_xds=f"{base}/xds/repository" if base else None, whitelist=f"{base}/whitelist" if base else None,
        pacs=parse_dimse(pacs, "--pacs") if pacs else None, dimse=parse_dimse(dimse, "--dimse") if dimse else None,
        hl7=parse_host_port(hl7, "--hl7") if hl7 else None)


def certify(
    profile: Annotated[list[Profile], typer.Option("--profile", help="What the target claims to be (repeat).")],
    endpoints: Annotated[Path | None, typer.Option(help="A `drimbox demo` endpoints.json (DESIGN §5).")] = None,
    site: Annotated[str | None, typer.Option(help="With --endpoints: the node to certify (default: the first).")]
    = None,
    node: Annotated[str | None, typer.Option(help="The node's (site-facing) DICOMweb root URL.")] = None,
    network_node: Annotated[str | None, typer.Option(help="The node's network-facing DICOMweb root (mTLS).")] = None,
    registry: Annotated[str | None, typer.Option(help="The registry's base URL.")] = None,
    pacs: Annotated[str | None, typer.Option(help="AET@host:port where the kit C-STOREs its study.")] = None,
    dimse: Annotated[str | None, typer.Option(help="The node's own DIMSE SCP, AET@host:port.")] = None,
    hl7: Annotated[str | None, typer.Option(help="The node's MLLP listener, host:port.")] = None,
    token: Annotated[str | None, typer.Option(help="A practitioner's bearer token.", envvar="DRIMBOX_CERTIFY_TOKEN")]
    = None,
    token_command: Annotated[str | None, typer.Option(help="A command printing a bearer token.")] = None,
    consumer_token: Annotated[str | None, typer.Option(help="A token of a user of the consumer's portal, issued to "
                                                       "the consumer's own OIDC client (default: --token).")] = None,
    ca: Annotated[Path | None, typer.Option(help="CA bundle of the target's TLS certificates.")] = None,
    client_cert: Annotated[Path | None, typer.Option(help="Client certificate for the network face.")] = None,
    client_key: Annotated[Path | None, typer.Option(help="Its private key.")] = None,
    audit_command: Annotated[str | None, typer.Option(help="A command printing the node's audit trail as a FHIR "
                                                      "Bundle of AuditEvents ({since} is replaced).")] = None,
    trust_list_feed: Annotated[str | None, typer.Option(help="host:port where the kit serves trust lists; the "
                                                        "node's trust-list URL must point there.")] = None,
    trust_list_wait: Annotated[float, typer.Option(help="Seconds to wait for the node to fetch a served list.")]
    = 30.0,
    only: Annotated[list[Family] | None, typer.Option("--only", help="Run only this family (repeat).")] = None,
    scenario: Annotated[list[str] | None, typer.Option("--scenario", help="Run only this scenario id (repeat).")]
    = None,
    ct_images: Annotated[int, typer.Option(min=1, max=5000, help="Images of the performance CT series "
                                           "(national scenario: 1300).")] = 1300,
    first_image_max: Annotated[float, typer.Option(help="Threshold: seconds to the first image.")] = 2.0,
    viewing_min: Annotated[float, typer.Option(help="Threshold: MB/s of WADO-RS viewing.")] = 10.0,
    export_min: Annotated[float, typer.Option(help="Threshold: MB/s of the consumer's export.")] = 5.0,
    data_dir: Annotated[Path | None, typer.Option(help="Keep the kit's data (study, report sent) here and reuse "
                                                  "it on later runs against the same node.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
) -> None:
    """Run the national conformance scenarios against a node; exit 1 when any applicable one fails."""
    profiles = frozenset(profile)
    if endpoints is not None:
        target = target_from_endpoints(endpoints, site=site, profiles=profiles)
    else:
        target = _explicit_target(node, network_node, registry, pacs, dimse, hl7, profiles)
    overrides: dict[str, object] = {}
    if token or token_command:
        overrides["tokens"] = TokenSource(token=token, command=tuple(shlex.split(token_command or "")))
    if consumer_token:
        overrides["consumer_tokens"] = TokenSource(token=consumer_token)
    elif token or token_command:
        overrides["consumer_tokens"] = overrides["tokens"]
    for key, value in (("ca_file", ca), ("client_cert", client_cert), ("client_key", client_key)):
        if value is not None:
            overrides[key] = value
    if audit_command:
        overrides["audit_command"] = tuple(shlex.split(audit_command))
    if trust_list_feed:
        overrides["trust_list_feed"] = parse_host_port(trust_list_feed, "--trust-list-feed")
    overrides["trust_list_wait_s"] = trust_list_wait
    target = replace(target, **overrides)  # type: ignore[arg-type]
    options = RunOptions(ct_images=ct_images, first_image_max_s=first_image_max, viewing_min_mb_s=viewing_min,
                         export_min_mb_s=export_min, data_dir=data_dir)
    scenarios = all_scenarios()
    unknown = set(scenario or ()) - {s.id for s in scenarios}
    if unknown:
        raise ConfigError(f"--scenario: no scenario {', '.join(sorted(unknown))}", key="scenario")
    report = run_scenarios(scenarios, target, options=options, only=frozenset(only) if only else None,
                           ids=frozenset(scenario) if scenario else None)
    table = Table(title=f"drimbox certify — {target.name} ({', '.join(sorted(profiles))})")
    for column in ("scenario", "requirement", "verdict", "first finding"):
        table.add_column(column)
    for result in report.results:
        first = result.findings[0] if result.findings and result.verdict is Verdict.FAIL else ""
        table.add_row(result.scenario.id, result.scenario.requirement or "",
                      f"[{_STYLE[result.verdict]}]{result.verdict}[/]", first[:100])
    out_console.print(table)
    out_console.print(f"{report.count(Verdict.PASS)} passed, {report.count(Verdict.FAIL)} failed, "
                      f"{report.count(Verdict.NOT_APPLICABLE)} not applicable")
    if junit is not None:
        write_junit(report, junit)
    if html is not None:
        write_html(report, html)
    raise typer.Exit(0 if report.passed else 1)


def register(app: typer.Typer) -> None:
    """Add ``drimbox certify`` to the root app."""
    app.command("certify")(certify)
