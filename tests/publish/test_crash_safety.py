"""Crash safety (issue #5 acceptance): deterministic crash points and random SIGKILLs of the node.

The node runs as a child process (:mod:`tests.publish.node_child`) with a crash point selected by
``DRIMBOX_PUBLISH__CRASH_POINT``: it dies by ``os._exit`` at that exact point. It is restarted
without one, the RIS resends what it got no ACK for, and the registry (``drimbox registry serve``)
must hold exactly one approved KOS per acknowledged report.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drimbox.config import LocalAE
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.publish.crash import CRASH_EXIT_STATUS
from drimbox.publish.jobs import JobState
from drimbox.publish.outbox import Outbox

from .crashnet import CrashNet, Exam, Ris, assert_one_kos_per_exam, make_exams


@pytest.fixture()
def net(tmp_path: Path, orthanc_a_clean: OrthancProcess, node_ae: LocalAE) -> Iterator[CrashNet]:
    """Registry process + an outbox directory; the node is started by each test."""
    network = CrashNet(tmp_path, orthanc_a_clean, node_ae)
    yield network
    network.stop()


def test_crash_before_the_queue_commit(net: CrashNet, tmp_path: Path) -> None:
    (exam,) = make_exams(tmp_path / "exams", net.orthanc, 1)
    net.start_node("before-commit")
    ris = Ris(net.hl7_port)
    assert ris._try(exam.message()) is None  # no ACK: the node died before committing
    assert net.wait_exit() == CRASH_EXIT_STATUS
    net.start_node()
    ris.send(exam.message())  # the RIS resends
    assert net.outbox_idle() == {JobState.DONE: 1}
    assert_one_kos_per_exam(net, [exam])


def test_crash_after_the_commit_before_the_ack(net: CrashNet, tmp_path: Path) -> None:
    (exam,) = make_exams(tmp_path / "exams", net.orthanc, 1)
    net.start_node("before-ack")
    ris = Ris(net.hl7_port)
    assert ris._try(exam.message()) is None
    assert net.wait_exit() == CRASH_EXIT_STATUS
    net.start_node()
    ris.send(exam.message())  # same message: lands on the job committed before the crash
    assert net.outbox_idle() == {JobState.DONE: 1}
    assert_one_kos_per_exam(net, [exam])


@pytest.mark.parametrize("point", ["after-send", "before-done"])
def test_crash_between_send_and_done_on_an_update(net: CrashNet, tmp_path: Path, point: str) -> None:
    """Version 1 publishes; version 2 (RPLC) crashes after its ITI-41; the restart finishes it."""
    (exam,) = make_exams(tmp_path / "exams", net.orthanc, 1)
    net.start_node(point, crash_after=2)  # the second publication of this process dies
    ris = Ris(net.hl7_port)
    ris.send(exam.message(1))
    assert net.outbox_idle() == {JobState.DONE: 1}
    ris.send(exam.message(2))
    assert net.wait_exit() == CRASH_EXIT_STATUS
    net.start_node()
    assert net.outbox_idle() == {JobState.DONE: 2}
    assert_one_kos_per_exam(net, [exam])
    steps = net.steps(2)
    assert "recovered: in flight when the node stopped" in steps
    if point == "after-send":
        # The lost reply is not a reason to submit again: the registry is asked first.
        assert any(s.startswith("registered: found in the registry") for s in steps), steps
        assert sum(s.startswith("sending") for s in steps) == 1, steps


KILLS = 12


def _publish_under_fire(net: CrashNet, exams: list[Exam], *, seed: int, budget_s: float, kills: int = KILLS) -> int:
    """Send every report (new, then an update for one in five) while the node is SIGKILLed at random.

    The kills are placed by progress, not by the clock: at ``kills`` random counts of finished jobs,
    each after a random delay, so they land while work is in flight however fast the machine is.
    The RIS sends from a thread; the kills and restarts happen in this (main) thread, because the
    node dies with the thread that spawned it (PR_SET_PDEATHSIG).
    """
    rng = random.Random(seed)
    messages = [e.message(1) for e in exams] + [e.message(2) for e in exams if e.index % 5 == 0]
    ris = Ris(net.hl7_port)
    failure: list[BaseException] = []

    def send_all() -> None:
        try:
            for message in messages:
                ris.send(message, timeout=budget_s)
        except BaseException as exc:  # reported in the main thread
            failure.append(exc)

    net.start_node()
    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    deadline = time.monotonic() + budget_s
    done_kills = 0
    for target in sorted(rng.sample(range(1, len(messages) - 1), kills)):
        while _done(net) < target:
            assert time.monotonic() < deadline, "publication under fire did not finish in time"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))  # anywhere in the life of the jobs running then
        net.kill_node()
        done_kills += 1
        net.start_node()
    sender.join(timeout=max(1.0, deadline - time.monotonic()))
    assert not sender.is_alive() and not failure, failure
    counts = net.outbox_idle(timeout=max(30.0, deadline - time.monotonic()))
    assert counts == {JobState.DONE: len(messages)}, counts
    recovered = [job for job in range(1, len(messages) + 1)
                 if "recovered: in flight when the node stopped" in net.steps(job)]
    assert recovered, "no kill caught a job in flight: the test exercised nothing"
    return done_kills


def _done(net: CrashNet) -> int:
    outbox = Outbox(net.outbox_path)
    try:
        return outbox.counts().get(JobState.DONE, 0)
    finally:
        outbox.close()


def test_random_sigkills_while_publishing_80_reports(net: CrashNet, tmp_path: Path,
                                                     record_property: pytest.RecordProperty) -> None:
    """80 reports and 16 updates, the node SIGKILLed 6 times mid-flight (default suite; the 200-report
    run below is the slow one)."""
    exams = make_exams(tmp_path / "exams", net.orthanc, 80)
    kills = _publish_under_fire(net, exams, seed=80, budget_s=300, kills=6)
    record_property("sigkills", kills)
    assert_one_kos_per_exam(net, exams)


@pytest.mark.slow
def test_random_sigkills_while_publishing_200_reports(net: CrashNet, tmp_path: Path,
                                                      record_property: pytest.RecordProperty) -> None:
    """200 reports and 40 updates, the node SIGKILLed 12 times mid-flight (about 75 s on an idle machine)."""
    exams = make_exams(tmp_path / "exams", net.orthanc, 200)
    kills = _publish_under_fire(net, exams, seed=200, budget_s=480)
    record_property("sigkills", kills)
    assert_one_kos_per_exam(net, exams)
