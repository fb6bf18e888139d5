"""The configuration reference (docs/configuration.md) is the one generated from the settings models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from drimbox.config import NodeSettings
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
    script = Path(sys.executable).with_name("drimbox")
    printed = subprocess.run([str(script), "config", "reference"], capture_output=True, text=True, check=True,
                             cwd=ROOT).stdout
    assert printed == configuration_reference()
