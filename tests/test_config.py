"""Settings: TOML + environment, and one-line errors that name the bad key (through the real CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drimbox.config import load_settings
from drimbox.errors import ConfigError

GOOD = """
name = "site-a"
[pacs]
aet = "PACS_A"
host = "127.0.0.1"
port = 4242
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_reads_toml(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, GOOD))
    assert settings.name == "site-a"
    assert (settings.pacs.aet, settings.pacs.port) == ("PACS_A", 4242)
    assert settings.local.aet == "DRIMBOX"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIMBOX_PACS__PORT", "11112")
    monkeypatch.setenv("DRIMBOX_DIMSE__MAX_PDU", "0")
    settings = load_settings(_write(tmp_path, GOOD))
    assert settings.pacs.port == 11112
    assert settings.dimse.max_pdu == 0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (GOOD.replace('host = "127.0.0.1"\n', ""), "pacs.host"),
        (GOOD.replace("4242", "70000"), "pacs.port"),
        (GOOD.replace('"PACS_A"', '"A\\\\B"'), "pacs.aet"),
        ('name = "x"\n', "pacs"),
        (GOOD + "\n[dimse]\nacse_timeout_s = -1\n", "dimse.acse_timeout_s"),
        ("unknown_key = 1\n" + GOOD, "unknown_key"),
        (GOOD + "\nstray = 1\n", "pacs.stray"),
    ],
    ids=["missing-host", "port-range", "aet-backslash", "no-pacs", "negative-timeout", "unknown-key", "stray-pacs-key"],
)
def test_invalid_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, text))
    assert info.value.key == key
    assert str(info.value).split(": ")[1] == key


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drimbox", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace('host = "127.0.0.1"\n', ""), "pacs.host: Field required"),
        (GOOD.replace("4242", "0"), "pacs.port: Input should be greater than or equal to 1"),
        ("[pacs\nport = ", "not valid TOML"),
    ],
    ids=["missing-host", "port-zero", "bad-toml"],
)
def test_cli_reports_one_line_without_traceback(tmp_path: Path, text: str, expected: str) -> None:
    result = _cli("config", "check", "--config", str(_write(tmp_path, text)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_unreadable_file(tmp_path: Path) -> None:
    result = _cli("config", "check", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "cannot read the configuration file" in result.stderr
