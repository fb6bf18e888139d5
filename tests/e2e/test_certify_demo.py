"""Acceptance (issue 9): ``drimbox certify`` against the running demo with every profile — every
scenario passes, none is not applicable — and its HTML report renders in headless Chromium.

Site A's node is restarted for the run with its trust-list URL on the kit's feed (refreshed every
second), so that the corrupted-list scenario observes a real node fetch and refuse corrupted
lists; it is restarted with its own settings afterwards.
"""

from __future__ import annotations

from pathlib import Path

from drimbox.certify.catalogue import all_scenarios
from drimbox.devnet.ports import free_port
from tests.certify.reports import certify, screenshot
from tests.e2e.conftest import Net


def test_every_scenario_passes_against_the_demo(net: Net, tmp_path: Path, chromium: object) -> None:
    feed = f"127.0.0.1:{free_port('127.0.0.1')}"
    net.network.kill_node("site-a")
    net.network.restart_node("site-a", env={"DRIMBOX_TRUST_LIST__URL": f"http://{feed}/whitelist",
                                            "DRIMBOX_TRUST_LIST__REFRESH_S": "1"})
    try:
        profiles = ("dicomweb", "drimm-source", "drimm-consumer", "registry")
        # Tokens minted here rather than by the contract's token command (a process start each): the
        # test tool's, and one of a user of site A's portal (site A's own client) for the consumer side.
        run = certify(tmp_path, "--endpoints", str(net.workdir / "endpoints.json"), "--site", "site-a",
                      *(a for p in profiles for a in ("--profile", p)), "--token", net.token(client="tool"),
                      "--consumer-token", net.token(client="site-a"),
                      "--ct-images", "12", "--export-min", "1", "--trust-list-feed", feed, "--trust-list-wait", "20")
    finally:
        net.network.kill_node("site-a")
        net.network.restart_node("site-a")
    assert set(run.cases) == {s.id for s in all_scenarios()}
    failed = {k: c.failure for k, c in run.cases.items() if c.verdict != "pass"}
    assert not failed, failed
    assert run.exit_code == 0, run.output
    assert "corrupted.invalid" not in run.cases["trust.corrupted-list"].failure
    assert "unsigned list" in run.cases["trust.corrupted-list"].evidence
    assert "viewing throughput" in run.cases["perf.source.retrieve"].evidence
    assert "export throughput" in run.cases["perf.consumer.export"].evidence
    png = tmp_path / "certify.png"
    text = screenshot(chromium, run.html, png)
    assert png.stat().st_size > 20_000
    assert f"{len(run.cases)} passed" in text and "0 failed" in text
    for sid in ("perf.source.retrieve", "perf.consumer.export"):
        print(sid, run.cases[sid].evidence.split("figure", 1)[-1])  # noqa: T201 (figures in -s runs)
