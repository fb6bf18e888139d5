"""Test helper: run ``drimbox certify`` through its command line and read back its JUnit report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lxml import etree
from typer.testing import CliRunner

from drimbox.cli import app


@dataclass(frozen=True)
class Case:
    id: str
    verdict: str
    failure: str
    evidence: str


@dataclass(frozen=True)
class Run:
    exit_code: int
    output: str
    cases: dict[str, Case]
    html: Path

    def verdicts(self, prefix: str = "") -> dict[str, str]:
        return {k: c.verdict for k, c in self.cases.items() if k.startswith(prefix)}


def certify(tmp_path: Path, *args: str) -> Run:
    """Run ``drimbox certify ARGS --junit … --html …`` and parse the JUnit XML it wrote."""
    junit, html = tmp_path / "certify.xml", tmp_path / "certify.html"
    result = CliRunner().invoke(app, ["certify", *args, "--junit", str(junit), "--html", str(html)])
    assert junit.exists(), f"no JUnit report; exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    cases = {}
    for case in etree.parse(str(junit)).iter("testcase"):
        verdict = case.find("properties/property[@name='verdict']").get("value")  # type: ignore[union-attr]
        failure = case.find("failure")
        cases[case.get("name", "")] = Case(case.get("name", ""), verdict,
                                           (failure.text or "") if failure is not None else "",
                                           case.findtext("system-out") or "")
    return Run(result.exit_code, result.output, cases, html)


def screenshot(browser: object, html: Path, png: Path) -> str:
    """Render the HTML report in headless Chromium, save a PNG, return the page's text."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(html.as_uri())
        page.screenshot(path=str(png), full_page=True)
        return str(page.inner_text("body"))
    finally:
        context.close()
