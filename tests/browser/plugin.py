"""Browser fixtures (a pytest plugin loaded by ``tests/conftest.py``, so every test directory —
``tests/browser``, ``tests/e2e`` — can drive the browser): one headless Debian Chromium per session,
and where screenshots are kept.

Measurements reported through ``browser_report`` are printed in the run's summary. Artefacts
(screenshots, match reports) go to ``$DRIMBOX_TEST_ARTEFACTS`` when set, else to
``<pytest basetemp>/browser-artefacts``; the directory is printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.harness import CHROMIUM

_ARTEFACTS = pytest.StashKey[Path]()
_LINES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def artefacts_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where browser tests keep their screenshots (kept after the run)."""
    configured = os.environ.get("DRIMBOX_TEST_ARTEFACTS")
    path = Path(configured) if configured else tmp_path_factory.getbasetemp() / "browser-artefacts"
    path.mkdir(parents=True, exist_ok=True)
    request.config.stash[_ARTEFACTS] = path
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say where the screenshots are, so a failure can be looked at."""
    for line in config.stash.get(_LINES, []):
        terminalreporter.write_line(line)
    path = config.stash.get(_ARTEFACTS, None)
    if path is not None:
        terminalreporter.write_line(f"browser test artefacts (screenshots): {path}")


@pytest.fixture(scope="session")
def browser_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Add a line (a measurement: first-image time, NCC scores) to the end-of-run summary."""
    lines = request.config.stash.setdefault(_LINES, [])
    return lines.append


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (both installed by scripts/setup.sh; never skipped).

    Module-scoped: Playwright's sync API keeps an asyncio loop running in the main thread while it is
    open, which would break any later test that calls ``asyncio.run``."""
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM} (Debian package chromium; run scripts/setup.sh)"
    from playwright import sync_api

    from tests.browser.harness import launch_chromium

    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()
