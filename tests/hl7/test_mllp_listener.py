"""The MLLP listener over real TCP sockets on the node's loopback address.

Every test ends by checking that the listener still answers a good message: nothing a peer does
may stop it.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hl7_samples import SAMPLES, cr_message, sample_message
from mllp_client import MllpClient, ack_fields

from drimbox.config import Hl7Settings
from drimbox.devnet.ports import free_port
from drimbox.hl7 import MllpListener
from drimbox.reports import ImagingReport, ReportAction

HOST = "127.0.0.2"  # the node's own loopback address, as in tests/conftest.py


class Queue:
    """Stands for the outbox: records what was accepted; can be made to fail or to block."""

    def __init__(self) -> None:
        self.reports: list[ImagingReport] = []
        self.lock = threading.Lock()
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None

    def __call__(self, report: ImagingReport) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        with self.lock:
            self.reports.append(report)


def _settings(**changes: object) -> Hl7Settings:
    base: dict[str, object] = {
        "host": HOST,
        "port": free_port(HOST),
        "max_message_bytes": 256 * 1024,
        "max_connections": 4,
        "idle_timeout_s": 5.0,
        "frame_timeout_s": 1.0,
        "shutdown_grace_s": 1.0,
    }
    return Hl7Settings.model_validate({**base, **changes})


@pytest.fixture()
def queue() -> Queue:
    return Queue()


@pytest.fixture()
def listener(queue: Queue) -> Iterator[MllpListener]:
    server = MllpListener(_settings(), queue)
    server.start()
    yield server
    server.stop()


def _still_serves(listener: MllpListener, control_id: str = "STILL-OK") -> None:
    with MllpClient(listener.address) as client:
        ack = ack_fields(client.exchange(cr_message("C-ORU", control_id=control_id)))
    assert ack["MSA"][1:3] == ["AA", control_id]


def test_every_sample_on_one_connection(listener: MllpListener, queue: Queue) -> None:
    names = sorted(SAMPLES)
    with MllpClient(listener.address) as client:
        for number, name in enumerate(names):
            ack = ack_fields(client.exchange(sample_message(name, control_id=f"M{number}")))
            assert ack["MSA"][1:3] == ["AA", f"M{number}"], (name, ack)
            assert ack["MSH"][8].startswith("ACK^")
    assert [r.message_control_id for r in queue.reports] == [f"M{n}" for n in range(len(names))]
    withdrawn = {r.message_control_id for r in queue.reports if r.action is ReportAction.WITHDRAW}
    assert withdrawn == {f"M{names.index('I-MDM')}", f"M{names.index('I-ORU')}"}


def test_several_messages_in_one_write(listener: MllpListener, queue: Queue) -> None:
    frames = b"".join(b"\x0b" + cr_message("C-ORU", control_id=f"B{n}") + b"\x1c\r" for n in range(3))
    with MllpClient(listener.address) as client:
        client.send_raw(frames)
        answers = [ack_fields(client.receive() or b"") for _ in range(3)]
    assert [a["MSA"][2] for a in answers] == ["B0", "B1", "B2"]
    assert len(queue.reports) == 3


def test_concurrent_clients(listener: MllpListener, queue: Queue) -> None:
    def client_run(number: int) -> list[str]:
        codes = []
        with MllpClient(listener.address) as client:
            for message in range(5):
                ack = ack_fields(client.exchange(cr_message("G2-ORU", control_id=f"C{number}-{message}")))
                codes.append(f"{ack['MSA'][1]}:{ack['MSA'][2]}")
        return codes

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(client_run, range(4)))
    assert results == [[f"AA:C{n}-{m}" for m in range(5)] for n in range(4)]
    assert len(queue.reports) == 20


def test_ack_only_after_accept_returns(listener: MllpListener, queue: Queue) -> None:
    queue.gate = threading.Event()
    with MllpClient(listener.address) as client:
        client.send(cr_message("C-ORU", control_id="SLOW"))
        with pytest.raises(TimeoutError):
            client.receive(timeout=0.5)
        assert queue.reports == []
        queue.gate.set()
        ack = ack_fields(client.receive(timeout=5) or b"")
    assert ack["MSA"][1:3] == ["AA", "SLOW"]
    assert len(queue.reports) == 1


def test_accept_failure_gives_ae_and_the_connection_goes_on(listener: MllpListener, queue: Queue) -> None:
    queue.fail = OSError("database is locked")
    with MllpClient(listener.address) as client:
        ack = ack_fields(client.exchange(cr_message("C-ORU", control_id="Q1")))
        assert ack["MSA"][1:3] == ["AE", "Q1"]
        assert ack["ERR"][3] == "207^Application internal error^HL70357"
        assert "could not be queued" in ack["ERR"][8] and "database is locked" in ack["ERR"][8]
        queue.fail = None
        assert ack_fields(client.exchange(cr_message("C-ORU", control_id="Q2")))["MSA"][1:3] == ["AA", "Q2"]
    assert [r.message_control_id for r in queue.reports] == ["Q2"]


def _without_pid(message: bytes) -> bytes:
    return b"\r".join(s for s in message.split(b"\r") if not s.startswith(b"PID|"))


@pytest.mark.parametrize(
    ("make", "code", "err_code", "control_id"),
    [
        pytest.param(lambda m: m[: m.index(b"\rPRT") - 500], "AE", "102", "BAD", id="truncated"),
        pytest.param(
            lambda m: m.replace(b"MSH|^~\\&|", b"MSH|^^\\&|", 1), "AR", "102", "BAD", id="wrong-encoding-characters"
        ),
        pytest.param(_without_pid, "AE", "100", "BAD", id="missing-PID"),
        pytest.param(lambda m: m.replace(b"^Base64^", b"^Base64^%%%", 1), "AE", "102", "BAD", id="bad-base64"),
        pytest.param(
            lambda m: re.sub(rb"\^Base64\^[^|]+\|", b"^Base64^" + base64.b64encode(b"<ClinicalDocument") + b"|", m),
            "AE",
            "102",
            "BAD",
            id="bad-CDA-XML",
        ),
        pytest.param(
            lambda m: m.replace(b"|ORU^R01^ORU_R01|", b"|ADT^A01^ADT_A01|", 1),
            "AR",
            "200",
            "BAD",
            id="unsupported-type",
        ),
        pytest.param(lambda m: b"not HL7 at all", "AR", "100", "", id="garbage-frame"),
        pytest.param(lambda m: b"", "AR", "100", "", id="empty-frame"),
    ],
)
def test_malformed_messages_get_a_nak(
    listener: MllpListener, queue: Queue, make: Callable[[bytes], bytes], code: str, err_code: str, control_id: str
) -> None:
    with MllpClient(listener.address) as client:
        ack = ack_fields(client.exchange(make(cr_message("C-ORU", control_id="BAD"))))
        assert ack["MSA"][1:3] == [code, control_id]
        assert ack["ERR"][3].split("^")[0] == err_code
        assert ack["ERR"][8]
        # the same connection keeps working
        assert ack_fields(client.exchange(cr_message("C-ORU", control_id="GOOD")))["MSA"][1] == "AA"
    assert [r.message_control_id for r in queue.reports] == ["GOOD"]


def test_oversized_frame_is_refused_and_the_connection_goes_on(listener: MllpListener, queue: Queue) -> None:
    message = cr_message("C-ORU", control_id="BIG").replace(b"^Base64^", b"^Base64^" + b"A" * 300_000, 1)
    with MllpClient(listener.address) as client:
        ack = ack_fields(client.exchange(message))
        assert ack["MSA"][1:3] == ["AR", "BIG"]
        assert "exceeds the limit" in ack["ERR"][8]
        assert ack_fields(client.exchange(cr_message("C-ORU", control_id="SMALL")))["MSA"][1] == "AA"
    assert [r.message_control_id for r in queue.reports] == ["SMALL"]


def test_bytes_outside_frames_are_skipped(listener: MllpListener, queue: Queue) -> None:
    with MllpClient(listener.address) as client:
        client.send_raw(b"GET / HTTP/1.1\r\n\r\n")
        ack = ack_fields(client.exchange(cr_message("C-ORU", control_id="AFTER-NOISE")))
    assert ack["MSA"][1:3] == ["AA", "AFTER-NOISE"]
    _still_serves(listener)


def test_endless_garbage_closes_the_connection(listener: MllpListener) -> None:
    with MllpClient(listener.address) as client:
        try:
            for _ in range(10):
                client.send_raw(b"x" * 64 * 1024)
        except OSError:
            pass  # the server may already have closed
        assert client.receive(timeout=5) is None
    _still_serves(listener)


def test_client_disconnecting_mid_frame(listener: MllpListener, queue: Queue) -> None:
    message = cr_message("C-ORU", control_id="HALF")
    with MllpClient(listener.address) as client:
        client.send_raw(b"\x0b" + message[: len(message) // 2])
    time.sleep(0.2)
    _still_serves(listener)
    assert [r.message_control_id for r in queue.reports] == ["STILL-OK"]


def test_frame_without_end_block_is_answered_then_closed(listener: MllpListener, queue: Queue) -> None:
    with MllpClient(listener.address) as client:
        client.send_raw(b"\x0b" + cr_message("C-ORU", control_id="NO-END"))
        ack = ack_fields(client.receive(timeout=5) or b"")
        assert ack["MSA"][1:3] == ["AR", "NO-END"]
        assert "no end block" in ack["ERR"][8]
        assert client.receive(timeout=5) is None
    assert queue.reports == []
    _still_serves(listener)


def test_frame_cut_short_by_a_new_frame(listener: MllpListener, queue: Queue) -> None:
    first = cr_message("C-ORU", control_id="CUT")
    with MllpClient(listener.address) as client:
        client.send_raw(b"\x0b" + first[:300] + b"\x0b" + cr_message("C-ORU", control_id="WHOLE") + b"\x1c\r")
        cut, whole = ack_fields(client.receive() or b""), ack_fields(client.receive() or b"")
    assert cut["MSA"][1:3] == ["AR", "CUT"]
    assert whole["MSA"][1:3] == ["AA", "WHOLE"]
    assert [r.message_control_id for r in queue.reports] == ["WHOLE"]


def test_end_block_without_carriage_return_is_tolerated(listener: MllpListener) -> None:
    with MllpClient(listener.address) as client:
        client.send_raw(b"\x0b" + cr_message("C-ORU", control_id="NOCR") + b"\x1c")
        assert ack_fields(client.receive() or b"")["MSA"][1:3] == ["AA", "NOCR"]


def test_acks_are_not_acknowledged(listener: MllpListener) -> None:
    with MllpClient(listener.address) as client:
        client.send(b"MSH|^~\\&|RIS|SITE|DRIMBOX|SITE|20250101||ACK^R01^ACK|A1|P|2.5\rMSA|AA|X1\r")
        ack = ack_fields(client.exchange(cr_message("C-ORU", control_id="NEXT")))
    assert ack["MSA"][1:3] == ["AA", "NEXT"]  # the first answer on the wire is the one for NEXT


def test_connections_over_the_limit_are_closed(listener: MllpListener) -> None:
    clients = [MllpClient(listener.address) for _ in range(4)]
    try:
        time.sleep(0.2)
        with MllpClient(listener.address) as extra:
            assert extra.receive(timeout=5) is None
        for number, client in enumerate(clients):
            assert ack_fields(client.exchange(cr_message("C-ORU", control_id=f"K{number}")))["MSA"][1] == "AA"
    finally:
        for client in clients:
            client.close()
    time.sleep(0.2)
    _still_serves(listener)


def test_idle_connections_are_closed(queue: Queue) -> None:
    server = MllpListener(_settings(idle_timeout_s=0.3), queue)
    server.start()
    try:
        with MllpClient(server.address) as client:
            assert client.receive(timeout=5) is None
        assert server.connection_count == 0
    finally:
        server.stop()


def test_stop_releases_the_port_and_start_reports_a_busy_one(queue: Queue) -> None:
    settings = _settings()
    first = MllpListener(settings, queue)
    first.start()
    second = MllpListener(settings, queue)
    with pytest.raises(OSError):
        second.start()
    first.stop()
    with pytest.raises(OSError):
        socket.create_connection((HOST, settings.port), timeout=1).close()
    third = MllpListener(settings, queue)
    third.start()
    try:
        _still_serves(third)
    finally:
        third.stop()


def test_stop_lets_a_message_in_progress_finish(queue: Queue) -> None:
    server = MllpListener(_settings(shutdown_grace_s=5), queue)
    server.start()
    queue.gate = threading.Event()
    client = MllpClient(server.address)
    try:
        client.send(cr_message("C-ORU", control_id="LAST"))
        time.sleep(0.2)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        time.sleep(0.2)
        queue.gate.set()
        ack = ack_fields(client.receive(timeout=5) or b"")
        stopper.join(10)
        assert ack["MSA"][1:3] == ["AA", "LAST"]
        assert not stopper.is_alive()
    finally:
        client.close()


def test_serve_inside_an_event_loop(queue: Queue) -> None:
    async def scenario() -> list[bytes]:
        server = MllpListener(_settings(), queue)
        ready = asyncio.Event()
        task = asyncio.create_task(server.serve(ready=lambda _address: ready.set()))
        await asyncio.wait_for(ready.wait(), 5)
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"\x0b" + cr_message("C-ORU", control_id="ASYNC") + b"\x1c\r")
        answer = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 5)
        writer.close()
        server.close()
        await asyncio.wait_for(task, 5)
        return [answer]

    (answer,) = asyncio.run(scenario())
    assert ack_fields(answer[1:-2])["MSA"][1:3] == ["AA", "ASYNC"]
