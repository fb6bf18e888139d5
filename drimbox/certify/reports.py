"""The run's reports: JUnit XML (for CI) and a self-contained HTML page (to file), from Jinja2.

JUnit: one ``testsuite`` per family, one ``testcase`` per scenario; failures carry the findings,
not-applicable scenarios are ``skipped`` with the reason (JUnit has no other word for them — the
HTML report and the summary say *not applicable*), the evidence goes to ``system-out``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from lxml import etree

from drimbox.certify.model import Family, Result, Verdict
from drimbox.certify.runner import RunReport

__all__ = ["html_report", "junit_xml", "write_html", "write_junit"]


def _by_family(report: RunReport) -> dict[Family, list[Result]]:
    grouped: dict[Family, list[Result]] = defaultdict(list)
    for result in report.results:
        grouped[result.scenario.family].append(result)
    return grouped


def _evidence_text(result: Result) -> str:
    parts = [f"[{e.kind}] {e.title}\n{e.text}" for e in result.evidence]
    parts += [f"figure {f.name} = {f.value:.4g} {f.unit}" for f in result.figures]
    return "\n\n".join(parts)


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters."""
    return "".join(c for c in text if c in "\t\n\r" or ord(c) >= 0x20)


def junit_xml(report: RunReport) -> bytes:
    """The JUnit XML document of ``report``."""
    suites = etree.Element("testsuites", name=f"drimbox certify {report.target.name}")
    for family, results in _by_family(report).items():
        suite = etree.SubElement(suites, "testsuite", name=str(family), tests=str(len(results)),
                                 failures=str(sum(r.verdict is Verdict.FAIL for r in results)),
                                 skipped=str(sum(r.verdict is Verdict.NOT_APPLICABLE for r in results)),
                                 time=f"{sum(r.duration_s for r in results):.3f}")
        for result in results:
            s = result.scenario
            case = etree.SubElement(suite, "testcase", classname=f"certify.{family}", name=s.id,
                                    time=f"{result.duration_s:.3f}")
            props = etree.SubElement(case, "properties")
            etree.SubElement(props, "property", name="requirement", value=s.requirement or "")
            etree.SubElement(props, "property", name="verdict", value=str(result.verdict))
            if result.verdict is Verdict.FAIL:
                failure = etree.SubElement(case, "failure", message=_clean(result.findings[0][:500]))
                failure.text = _clean("\n".join(result.findings))
            elif result.verdict is Verdict.NOT_APPLICABLE:
                etree.SubElement(case, "skipped", message=_clean("not applicable: " + "; ".join(result.findings)))
            out = etree.SubElement(case, "system-out")
            out.text = _clean(_evidence_text(result))
    return bytes(etree.tostring(suites, xml_declaration=True, encoding="UTF-8", pretty_print=True))


_ENV = Environment(loader=PackageLoader("drimbox.certify", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def html_report(report: RunReport) -> str:
    """The HTML page of ``report`` (inline CSS, no script, every text escaped)."""
    template = _ENV.get_template("report.html.j2")
    return template.render(report=report, families=_by_family(report), Verdict=Verdict)


def write_junit(report: RunReport, path: Path) -> None:
    path.write_bytes(junit_xml(report))


def write_html(report: RunReport, path: Path) -> None:
    path.write_text(html_report(report), encoding="utf-8")
