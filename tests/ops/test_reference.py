"""The generated documents are in sync with the code: the configuration reference (docs/configuration.md)
with the settings models, the conformance statements with the negotiation lists."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from drimbox.cli import app
from drimbox.config import NodeSettings
from drimbox.ops.conformance import dicom_conformance, dicomweb_conformance
from drimbox.ops.metrics_reference import metrics_reference
from drimbox.ops.reference import configuration_reference, is_table

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_reference_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == configuration_reference(), \
        "docs/configuration.md is out of date: run `drimbox config reference --output docs/configuration.md`"


def test_every_key_of_every_table_is_documented() -> None:
    text = configuration_reference()
    for name, field in NodeSettings.model_fields.items():
        model = is_table(field.annotation)
        if model is None:
            assert f"| `{name}` |" in text
            continue
        title = f"## `[[{name}]]`" if f"## `[[{name}]]`" in text else f"## `[{name}]`"
        section = text.split(title, 1)[1].split("\n## ", 1)[0]
        for key in model.model_fields:
            assert f"| `{key}` |" in section, f"[{name}] {key} missing from the reference"
    assert "Seconds to expiry" not in text  # metrics are documented in drimbox.metrics, not here
    assert "| `shutdown_grace_s` | number (≥ 0, ≤ 3600) | `30.0` |" in text


def test_the_command_prints_it() -> None:
    result = CliRunner().invoke(app, ["config", "reference"])
    assert result.exit_code == 0, result.output
    assert result.stdout == configuration_reference()


def test_the_committed_conformance_statements_and_metrics_reference_are_the_generated_ones() -> None:
    generated = {"dicom-conformance.md": dicom_conformance(), "dicomweb-conformance.md": dicomweb_conformance(),
                 "metrics.md": metrics_reference()}
    for name, text in generated.items():
        committed = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert committed == text, f"docs/{name} is out of date: run `drimbox config conformance --output-dir docs` " \
                                  "or `drimbox config metrics --output docs/metrics.md`"


def test_the_conformance_statements_name_what_the_code_negotiates() -> None:
    dicom = dicom_conformance()
    for uid in ("1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.20.1",
                "1.2.840.10008.1.2.4.90", "1.2.840.10008.5.1.4.1.2.2.3"):  # MG, CT, commitment, J2K lossless, GET
        assert f"`{uid}`" in dicom
    web = dicomweb_conformance()
    assert "| GET | `/dicom-web/studies/{study}/series/{series}` | yes | yes |" in web
    assert "| POST | `/dicom-web/studies` | yes | no |" in web
    assert "| GET | `/dicom-web/studies` | yes | no |" in web


def test_the_metrics_reference_lists_every_metric_a_node_exposes() -> None:
    text = metrics_reference()
    for name in ("drimbox_http_requests_total", "drimbox_instance_bytes_served_total", "drimbox_outbox_jobs",
                 "drimbox_publication_latency_seconds", "drimbox_certificate_expiry_seconds",
                 "drimbox_dimse_associations_total", "drimbox_cache_lookups_total"):
        assert f"| `{name}` |" in text
