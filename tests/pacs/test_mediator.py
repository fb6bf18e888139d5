"""Message IDs and the routing of incoming C-STOREs (unit level; end to end in test_retrieve/test_scp)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from drimbox.pacs import MoveMediator, RetrievedInstance
from drimbox.pacs.channel import InstanceChannel, RetrieveOutcome
from drimbox.pacs.mediator import MessageIds


def test_message_ids_wrap_skip_zero_and_ids_in_use() -> None:
    ids = MessageIds()
    reserved = ids.reserve()
    assert reserved == 1
    seen = [ids.next() for _ in range(65535)]
    assert 0 not in seen and reserved not in seen
    assert seen[0] == 2 and seen[65533] == 65535 and seen[65534] == 2  # wrapped past 65535, skipping 0 and 1
    ids.release(reserved)
    assert 1 in {ids.next() for _ in range(65535)}


def test_message_ids_are_unique_across_threads() -> None:
    ids = MessageIds()
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [ids.next() for _ in range(1000)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8000


def test_routing(tmp_path: Path) -> None:
    mediator = MoveMediator(quarantine_dir=tmp_path / "q")
    with (
        mediator.subscribe(originator_aet="NODE", expected=["1.1", "1.2"], dest=tmp_path / "a") as a,
        mediator.subscribe(originator_aet="NODE", expected=["1.2", "1.3"], dest=tmp_path / "b") as b,
    ):
        id_a, id_b = mediator.allocate(a), mediator.allocate(b)
        assert id_a != id_b
        by_key = mediator.route(originator_aet="NODE  ", originator_message_id=id_b, sop_instance_uid="1.1")
        assert (by_key.subscription, by_key.matched_by) == (b, "originator")
        by_uid = mediator.route(originator_aet=None, originator_message_id=None, sop_instance_uid="1.3")
        assert (by_uid.subscription, by_uid.matched_by) == (b, "sop-instance")
        first = mediator.route(originator_aet="", originator_message_id=None, sop_instance_uid="1.2")
        second = mediator.route(originator_aet="", originator_message_id=None, sop_instance_uid="1.2")
        assert {first.subscription, second.subscription} == {a, b}  # each request gets its copy
        stray = mediator.route(originator_aet="OTHER", originator_message_id=7, sop_instance_uid="9.9")
        assert stray.quarantined and stray.root == tmp_path / "q"
        assert mediator.pending == 2
    assert mediator.pending == 0
    late = mediator.route(originator_aet="NODE", originator_message_id=id_a, sop_instance_uid="1.1")
    assert late.quarantined  # the request is gone: stragglers after it are quarantined


def _instance(n: int) -> RetrievedInstance:
    return RetrievedInstance(Path(f"/x/{n}"), "1.1", "1.2", "1.3", f"1.4.{n}", "1.2.840.10008.1.2.1", 1)


def test_channel_back_pressure_close_and_linger() -> None:
    channel = InstanceChannel(maxsize=1)
    assert channel.put(_instance(1))
    blocked = threading.Thread(target=channel.put, args=(_instance(2),))
    blocked.start()
    time.sleep(0.05)
    assert blocked.is_alive()  # buffer full: the producer waits
    assert channel.get() == _instance(1)
    blocked.join(1)
    assert not blocked.is_alive()
    assert channel.get() == _instance(2)

    channel.finish(RetrieveOutcome(status=0), needed=3, linger_s=0.2)  # one straggler still due
    started = time.monotonic()
    late = threading.Timer(0.05, channel.put, args=(_instance(3),))
    late.start()
    assert channel.get() == _instance(3)
    assert channel.get() is None  # all due received: no need to wait out the linger
    assert time.monotonic() - started < 0.2

    channel.close()
    assert channel.put(_instance(4)) is False


def test_channel_gives_up_on_stragglers_after_linger() -> None:
    channel = InstanceChannel(maxsize=4)
    channel.finish(RetrieveOutcome(status=0), needed=1, linger_s=0.1)
    started = time.monotonic()
    assert channel.get() is None
    assert 0.1 <= time.monotonic() - started < 0.5
