"""F7 retrieval site A → site B over the demo network's real network face (mutual TLS, real tokens).

What is checked: byte-identical files to site A's Orthanc, series fetched in parallel, resume after
the connection is cut mid-series by a real TCP proxy, an untrusted host never contacted, an
instance the KOS does not reference discarded and reported. Throughput is printed (``-s``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from drimbox.errors import SourceRefused, UntrustedPeer
from drimbox.retrieve.model import Actor, Exam, InstanceRef, SeriesRef
from drimbox.retrieve.transfer import StudyRetriever
from drimbox.trust.peers import HostListPolicy
from tests.e2e.conftest import Net
from tests.e2e.exams import published_exams


@pytest.fixture(scope="module")
def exams(net: Net) -> list[Exam]:
    found = published_exams(net.endpoints["registry"]["fhir"], net.token(), net.screened_patient)
    found += published_exams(net.endpoints["registry"]["fhir"], net.token(), net.ct_patient)
    assert len(found) >= 3
    return found


def _actor(net: Net) -> Actor:
    return Actor(subject="rpps:10101010101", rpps="10101010101", role="radiologist", display_name="Dr Test",
                 token=net.token())


def _orthanc_file(net: Net, sop: str) -> bytes:
    client = net.network.orthanc("site-a").client
    found = client.post("/tools/lookup", content=sop)
    found.raise_for_status()
    ids = [r["ID"] for r in found.json() if r["Type"] == "Instance"]
    assert ids, sop
    data = client.get(f"/instances/{ids[0]}/file")
    data.raise_for_status()
    return data.content


class Recorder:
    """A RetrievalProgress that remembers what happened, and when."""

    def __init__(self, proxy: CuttingProxy | None = None) -> None:
        self.proxy = proxy
        self.connection_of: dict[str, int] = {}
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.instances: list[tuple[str, int]] = []
        self.finished: list[tuple[str, str | None]] = []

    def series_started(self, series: SeriesRef) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def instance_received(self, series: SeriesRef, sop_instance_uid: str, size: int) -> None:
        with self.lock:
            self.instances.append((sop_instance_uid, size))
            if self.proxy is not None:
                self.connection_of[sop_instance_uid] = self.proxy.connections
        time.sleep(0.05)  # slow enough that parallel series overlap visibly

    def series_finished(self, series: SeriesRef, error: str | None) -> None:
        with self.lock:
            self.active -= 1
            self.finished.append((series.series_uid, error))


def _retriever(net: Net, tmp_path: Path, **retrieve: object) -> StudyRetriever:
    settings = net.settings("site-b", storage={"data_dir": str(tmp_path)},
                            retrieve={"identity_rule": "local", "local_issuer": "DEMO-SITE-B", **retrieve})
    return StudyRetriever(settings, HostListPolicy(settings.peers.hosts), backoff_s=0.1)


def test_full_retrieval_is_byte_identical_and_parallel(net: Net, exams: list[Exam], tmp_path: Path) -> None:
    retriever = _retriever(net, tmp_path, parallel_series=4)
    recorder = Recorder()
    try:
        for exam in exams:
            report = retriever.retrieve(exam, _actor(net), tmp_path / exam.kos_uid, progress=recorder)
            assert report.complete, report
            assert set(report.received) == exam.sop_instance_uids()
            for sop, path in report.received.items():
                assert path == tmp_path / exam.kos_uid / path.parent.name / f"{sop}.dcm"
                assert path.read_bytes() == _orthanc_file(net, sop)
    finally:
        retriever.close()
    multi = [e for e in exams if e.series_count > 1]
    assert multi, "a sample exam with several series is needed"
    assert recorder.max_active > 1, "series were not retrieved in parallel"
    assert all(error is None for _, error in recorder.finished)


def test_second_retrieval_fetches_nothing(net: Net, exams: list[Exam], tmp_path: Path) -> None:
    retriever = _retriever(net, tmp_path)
    try:
        first = retriever.retrieve(exams[0], _actor(net), tmp_path)
        again = retriever.retrieve(exams[0], _actor(net), tmp_path)
    finally:
        retriever.close()
    assert first.complete and again.complete
    assert first.bytes > 0 and again.bytes == 0
    assert again.received == first.received


def test_untrusted_host_is_not_contacted(net: Net, exams: list[Exam], tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.9", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    exam = exams[0]
    evil = replace(exam.series[0], retrieve_url=exam.series[0].retrieve_url.replace(
        urlsplit(exam.series[0].retrieve_url).netloc, f"127.0.0.9:{port}"))
    retriever = _retriever(net, tmp_path)
    try:
        with pytest.raises(UntrustedPeer):
            retriever.retrieve(replace(exam, series=(*exam.series[1:], evil)), _actor(net), tmp_path)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        retriever.close()
        listener.close()
    assert not any(tmp_path.iterdir()), "nothing is fetched when one URL is untrusted"


def test_unexpected_instance_is_discarded_and_reported(net: Net, exams: list[Exam], tmp_path: Path) -> None:
    exam = next(e for e in exams if any(len(s.instances) > 1 for s in e.series))
    series = next(s for s in exam.series if len(s.instances) > 1)
    dropped = series.instances[-1]
    # A KOS copy that forgets one instance: the source (scope of the real KOS) still sends it.
    narrowed = replace(series, instances=series.instances[:-1])
    retriever = _retriever(net, tmp_path)
    try:
        report = retriever.retrieve(replace(exam, series=(narrowed,)), _actor(net), tmp_path)
    finally:
        retriever.close()
    assert report.unexpected == (dropped.sop_instance_uid,)
    assert not report.complete
    assert not (tmp_path / series.series_uid / f"{dropped.sop_instance_uid}.dcm").exists()
    assert set(report.received) == {i.sop_instance_uid for i in narrowed.instances}
    assert not list((tmp_path / series.series_uid).glob(".*"))


def test_mismatched_sop_class_is_discarded(net: Net, exams: list[Exam], tmp_path: Path) -> None:
    exam = exams[0]
    series = exam.series[0]
    wrong = tuple(InstanceRef("1.2.840.10008.5.1.4.1.1.7", i.sop_instance_uid) if n == 0 else i
                  for n, i in enumerate(series.instances))
    retriever = _retriever(net, tmp_path)
    try:
        report = retriever.retrieve(replace(exam, series=(replace(series, instances=wrong),)), _actor(net), tmp_path)
    finally:
        retriever.close()
    assert report.mismatched == (wrong[0].sop_instance_uid,)
    assert report.missing == (wrong[0].sop_instance_uid,)


def test_refused_token_raises_source_refused(net: Net, exams: list[Exam], tmp_path: Path) -> None:
    retriever = _retriever(net, tmp_path)
    try:
        with pytest.raises(SourceRefused) as caught:
            retriever.retrieve(exams[0], replace(_actor(net), token="not-a-token"), tmp_path)
    finally:
        retriever.close()
    assert caught.value.status == 401


# --------------------------------------------------------------------------------- fault: cut link


class CuttingProxy:
    """A TCP proxy (on the upstream's address, another port) that cuts the first ``cuts`` connections after
    ``cut_after`` bytes from the server, then relays faithfully (a real mid-transfer network fault)."""

    def __init__(self, upstream: tuple[str, int], *, cut_after: int, cuts: int) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.connections = 0
        self.next_cuts: Iterator[int] = iter(())
        self.listener = socket.create_server((upstream[0], 0))
        self.address = self.listener.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            limit = self.cut_after if self.cuts_left > 0 else None
            self.cuts_left -= 1
            self.cut_after = next(self.next_cuts, self.cut_after)
            threading.Thread(target=self._relay, args=(client, limit), daemon=True).start()

    def _relay(self, client: socket.socket, limit: int | None) -> None:
        # From the client's own address: the source knows a node by the address it connects from.
        server = socket.create_connection(self.upstream, source_address=(client.getpeername()[0], 0))

        def pump(src: socket.socket, dst: socket.socket, budget: int | None) -> None:
            sent = 0
            try:
                while data := src.recv(65536):
                    if budget is not None and sent + len(data) >= budget:
                        dst.sendall(data[: budget - sent])
                        break
                    dst.sendall(data)
                    sent += len(data)
            except OSError:
                pass
            finally:
                for s in (client, server):
                    with _quiet():
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()

        threading.Thread(target=pump, args=(client, server, None), daemon=True).start()
        pump(server, client, limit)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(timeout=2)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


@pytest.fixture
def proxy(net: Net) -> Iterator[CuttingProxy]:
    parts = urlsplit(net.node("site-a")["network_dicomweb"])
    p = CuttingProxy((parts.hostname or "", parts.port or 443), cut_after=1, cuts=0)
    yield p
    p.close()


def _through(exam: Exam, proxy: CuttingProxy) -> Exam:
    def move(url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{proxy.address[0]}:{proxy.address[1]}"))

    return replace(exam, series=tuple(replace(s, retrieve_url=move(s.retrieve_url)) for s in exam.series))


def test_resume_after_connection_cut_mid_series(net: Net, exams: list[Exam], tmp_path: Path,
                                                proxy: CuttingProxy) -> None:
    exam = max(exams, key=lambda e: max(len(s.instances) for s in e.series))
    series = max(exam.series, key=lambda s: len(s.instances))
    assert len(series.instances) >= 2
    one = replace(exam, series=(series,))
    sizes = [len(_orthanc_file(net, i.sop_instance_uid)) for i in series.instances]
    # First connection cut after about 60 % of the series: the resume then asks the missing
    # instances one by one; the next connection is cut at once (a second fault), the third goes through.
    cut = int(sum(sizes) * 0.6)
    cuts = iter([cut, 1])
    proxy.cut_after = next(cuts)
    proxy.cuts_left = 2
    proxy.next_cuts = cuts
    # The proxy listens on site A's own address (another port): same host for TLS and the trust list.
    retriever = _retriever(net, tmp_path, attempts=4)
    recorder = Recorder(proxy)
    try:
        report = retriever.retrieve(_through(one, proxy), _actor(net), tmp_path, progress=recorder)
    finally:
        retriever.close()
    assert report.complete, report
    assert proxy.connections == 3, "cut twice, then one keep-alive connection for the missing instances"
    got = [sop for sop, _ in recorder.instances]
    assert sorted(got) == sorted(i.sop_instance_uid for i in series.instances), "each instance written once"
    before_cut = sum(1 for c in recorder.connection_of.values() if c == 1)
    assert len(series.instances) // 2 <= before_cut < len(series.instances), "the first cut was mid-series"
    for sop, path in report.received.items():
        assert path.read_bytes() == _orthanc_file(net, sop)


# ------------------------------------------------------------------------------- throughput, larger


def test_throughput_small_samples(net: Net, exams: list[Exam], tmp_path: Path) -> None:
    """A→B throughput on the demo's published samples (no progress callbacks)."""
    retriever = _retriever(net, tmp_path)
    total, seconds = 0, 0.0
    try:
        for exam in exams:
            report = retriever.retrieve(exam, _actor(net), tmp_path / exam.kos_uid)
            assert report.complete
            total, seconds = total + report.bytes, seconds + report.seconds
    finally:
        retriever.close()
    count = sum(e.instance_count for e in exams)
    print(f"\nretrieval A→B samples: {total / 1e6:.1f} MB, {count} instances in {seconds:.2f} s = "  # noqa: T201
          f"{total / 1e6 / seconds:.1f} MB/s")
