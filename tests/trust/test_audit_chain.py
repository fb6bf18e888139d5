"""The audit trail is tamper-evident: every tampering of issue #7's acceptance is caught by ``drimbox audit verify``.

Also: the FHIR export of a patient's accesses, concurrent writers, and the RFC 5424/5425 syslog copy.

Each test writes a real trail through :class:`AuditStore` (checkpoints signed with a TestCA node key),
tampers with the SQLite file or the checkpoint file the way an attacker with file access would, and runs
the real command line as a subprocess against a real node settings file.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509
from cryptography.x509.oid import NameOID

from drimbox.config import load_settings
from drimbox.devnet.pki import TestCA
from drimbox.trust.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditStore,
    CheckpointSigner,
    chain_hash,
    checkpoints_path_for,
    load_signing_key,
    read_records,
)
from drimbox.trust.audit_fhir import fhir_audit_event
from drimbox.trust.audit_syslog import SyslogForwarder, tls_client_context
from drimbox.trust.audit_verify import load_verify_key, verify_audit

INS_A = "1850297123456"
INS_B = "2770763987654"
KOS_A = "1.2.826.0.1.3680043.10.543.1.1"
STUDY_A = "1.2.826.0.1.3680043.10.543.2.1"
STUDY_B = "1.2.826.0.1.3680043.10.543.2.2"


@dataclass
class Node:
    """A node's settings file, its audit paths and its signing key."""

    config: Path
    db: Path
    checkpoints: Path
    key: Path
    cert: Path
    ca: TestCA

    def store(self, **kwargs: object) -> AuditStore:
        options: dict[str, object] = {"checkpoint_every": 4, "checkpoint_interval_s": 0.0}
        options.update(kwargs)
        return AuditStore(self.db, signing_key=load_signing_key(self.key), node="site-a", **options)  # type: ignore[arg-type]


def _events() -> list[AuditEvent]:
    """Ten events about two patients; two are network-face events naming only patient A's KOS/study."""
    at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    events = [
        AuditEvent(action="contextual-call", outcome="success", rpps="10001234567", role="radiologue",
                   subject="dr-a", patient_ins=INS_A, source="127.0.0.3", at=at.replace(day=1)),
        AuditEvent(action="registry.find", outcome="success", rpps="10001234567", patient_ins=INS_A,
                   at=at.replace(day=2)),
        AuditEvent(action="wado.instance-served", outcome="success", node="site-b", rpps="10001234567",
                   kos_uid=KOS_A, study_uid=STUDY_A, sop_instance_uids=("1.2.3.4.1", "1.2.3.4.2"),
                   at=at.replace(day=3)),
        AuditEvent(action="portal.patient", outcome="success", rpps="10009999999", patient_ins=INS_B,
                   study_uid=STUDY_B, emergency=True, at=at.replace(day=4)),
        AuditEvent(action="import", outcome="success", patient_ins=INS_A, study_uid=STUDY_A, kos_uid=KOS_A,
                   at=at.replace(day=5)),
        AuditEvent(action="wado.kos-scope", outcome="refused", node="site-c", kos_uid="1.2.9.9",
                   detail="outside the manifest", at=at.replace(day=6)),
        AuditEvent(action="xdm.export", outcome="success", patient_ins=INS_B, study_uid=STUDY_B,
                   at=at.replace(day=7)),
        AuditEvent(action="dimse.move", outcome="success", study_uid=STUDY_A, at=at.replace(day=8)),
        AuditEvent(action="contextual-call", outcome="refused", patient_ins=INS_B, at=at.replace(day=9)),
        AuditEvent(action="contextual-call", outcome="success", patient_ins=INS_A, emergency=True,
                   at=at.replace(day=10)),
    ]
    return events


@pytest.fixture()
def node(tmp_path: Path) -> Node:
    """A node (TestCA certificate + key as tls files) with a closed trail of ten records."""
    ca = TestCA.create(tmp_path / "pki")
    issued = ca.issue("site-a", hosts=["127.0.0.2"])
    data_dir = tmp_path / "data"
    config = tmp_path / "node.toml"
    config.write_text(tomli_w.dumps({
        "name": "site-a",
        "pacs": {"aet": "PACS", "host": "127.0.0.1", "port": 4242},
        "storage": {"data_dir": str(data_dir)},
        "tls": {"ca_file": str(ca.cert_path), "cert_file": str(issued.cert_path), "key_file": str(issued.key_path)},
    }))
    db = data_dir / "audit.sqlite"
    result = Node(config, db, checkpoints_path_for(db), issued.key_path, issued.cert_path, ca)
    store = result.store()
    for event in _events():
        store.record(event)
    store.close()
    return result


def verify_cli(node: Node) -> tuple[int, str]:
    """``drimbox audit verify --config …`` as a user runs it: (exit status, stdout + stderr)."""
    done = subprocess.run([sys.executable, "-m", "drimbox", "audit", "verify", "--config", str(node.config)],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout + done.stderr


def sql(node: Node, statement: str, *args: object) -> None:
    """Tamper with the database directly (what file access allows, bypassing the store)."""
    db = sqlite3.connect(node.db, isolation_level=None)
    try:
        db.execute(statement, args)
    finally:
        db.close()


def rechain(node: Node, start: int) -> None:
    """Recompute ``prev_hash``/``hash`` from ``start`` on, as an attacker hiding an edit would."""
    db = sqlite3.connect(node.db, isolation_level=None)
    try:
        rows = db.execute("SELECT seq, body FROM audit_event WHERE seq >= ? ORDER BY seq", (start,)).fetchall()
        prev = db.execute("SELECT hash FROM audit_event WHERE seq < ? ORDER BY seq DESC LIMIT 1",
                          (start,)).fetchone()
        previous = prev[0] if prev else GENESIS_HASH
        for seq, body in rows:
            digest = chain_hash(seq, previous, body)
            db.execute("UPDATE audit_event SET prev_hash = ?, hash = ? WHERE seq = ?", (previous, digest, seq))
            previous = digest
    finally:
        db.close()


def kinds(node: Node) -> set[str]:
    return verify_audit(node.db, node.checkpoints, load_verify_key(node.cert)).kinds()


def test_clean_trail_verifies(node: Node) -> None:
    status, output = verify_cli(node)
    assert status == 0, output
    assert "intact" in output and "10 records" in output
    lines = node.checkpoints.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [4, 8, 10]  # every 4 records, and at close
    report = verify_audit(node.db, node.checkpoints, load_verify_key(node.cert))
    assert report.ok and report.checkpoints == 3 and report.uncovered == 0


def test_chain_links_every_record(node: Node) -> None:
    records = read_records(node.db)
    assert [r.seq for r in records] == list(range(1, 11))
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in zip(records, records[1:], strict=False):
        assert after.prev_hash is not None and after.prev_hash == before.hash
        assert after.hash == chain_hash(after.seq, after.prev_hash, after.body)


def test_updated_body_is_detected(node: Node) -> None:
    body = json.loads(read_records(node.db)[2].body)
    body["rpps"] = "10000000000"  # someone else's name on the access
    sql(node, "UPDATE audit_event SET body = ? WHERE seq = 3", json.dumps(body, sort_keys=True))
    status, output = verify_cli(node)
    assert status == 1
    assert "TAMPERED" in output and "record-modified seq=3" in output


def test_updated_hash_is_detected(node: Node) -> None:
    sql(node, "UPDATE audit_event SET hash = ? WHERE seq = 6", "ab" * 32)
    status, output = verify_cli(node)
    assert status == 1 and "record-modified seq=6" in output and "chain-broken seq=7" in output


def test_updated_index_column_is_detected(node: Node) -> None:
    """The patient column drives the export: moving an access to another patient there is caught too."""
    sql(node, "UPDATE audit_event SET patient_ins = ? WHERE seq = 1", INS_B)
    status, output = verify_cli(node)
    assert status == 1 and "column-mismatch seq=1" in output


def test_deleted_record_is_detected(node: Node) -> None:
    sql(node, "DELETE FROM audit_event WHERE seq = 5")
    status, output = verify_cli(node)
    assert status == 1 and "record-deleted seq=6" in output and "seq 5..5 missing" in output


def test_deleted_first_record_is_detected(node: Node) -> None:
    sql(node, "DELETE FROM audit_event WHERE seq = 1")
    status, output = verify_cli(node)
    assert status == 1 and "head-deleted seq=2" in output


def test_reordered_records_are_detected(node: Node) -> None:
    """Rows 3 and 4 swap places (their seq numbers exchanged)."""
    sql(node, "UPDATE audit_event SET seq = -3 WHERE seq = 3")
    sql(node, "UPDATE audit_event SET seq = 3 WHERE seq = 4")
    sql(node, "UPDATE audit_event SET seq = 4 WHERE seq = -3")
    status, output = verify_cli(node)
    assert status == 1 and "record-reordered seq=3" in output


def test_deleted_last_record_is_detected(node: Node) -> None:
    """The chain that is left is valid: only the signed checkpoint at close shows the cut."""
    sql(node, "DELETE FROM audit_event WHERE seq = 10")
    assert kinds(node) == {"tail-truncated"}
    status, output = verify_cli(node)
    assert status == 1 and "tail-truncated seq=10" in output


def test_tail_cut_and_rechained_is_detected(node: Node) -> None:
    sql(node, "DELETE FROM audit_event WHERE seq >= 7")
    assert kinds(node) == {"tail-truncated"}


def test_rewritten_records_with_recomputed_hashes_are_detected(node: Node) -> None:
    """Records 6..10 rewritten and the chain recomputed: the database alone looks intact."""
    db = sqlite3.connect(node.db, isolation_level=None)
    for seq, body in db.execute("SELECT seq, body FROM audit_event WHERE seq >= 6").fetchall():
        data = json.loads(body)
        data["outcome"] = "success"
        data["detail"] = "nothing to see"
        db.execute("UPDATE audit_event SET body = ?, outcome = 'success' WHERE seq = ?",
                   (json.dumps(data, sort_keys=True), seq))
    db.close()
    rechain(node, 6)
    report = verify_audit(node.db, node.checkpoints, load_verify_key(node.cert))
    assert report.kinds() == {"checkpoint-mismatch"}  # no chain finding: only the signatures reveal it
    assert sorted(f.seq for f in report.findings if f.seq is not None) == [8, 10]
    status, output = verify_cli(node)
    assert status == 1 and "checkpoint-mismatch seq=8" in output and "checkpoint-mismatch seq=10" in output


def test_wholly_recomputed_chain_is_detected(node: Node) -> None:
    body = json.loads(read_records(node.db)[0].body)
    body["patient_ins"] = INS_B
    sql(node, "UPDATE audit_event SET body = ?, patient_ins = ? WHERE seq = 1", json.dumps(body), INS_B)
    rechain(node, 1)
    assert kinds(node) == {"checkpoint-mismatch"}


def test_forged_checkpoint_is_detected(node: Node) -> None:
    """The attacker cuts the tail and signs a new checkpoint with a key of their own."""
    sql(node, "DELETE FROM audit_event WHERE seq >= 9")
    records = read_records(node.db)
    lines = node.checkpoints.read_text().splitlines()[:2]  # drop the checkpoint at 10
    node.checkpoints.write_text("\n".join(lines) + "\n")
    other = node.ca.issue("mallory")
    CheckpointSigner(load_signing_key(other.key_path), node.checkpoints, node="site-a").write(8, records[-1].hash or "")
    status, output = verify_cli(node)
    assert status == 1 and "checkpoint-forged seq=8 checkpoint-line=3" in output


def test_edited_checkpoint_is_detected(node: Node) -> None:
    lines = node.checkpoints.read_text().splitlines()
    last = json.loads(lines[-1])
    last["seq"] = 9  # pretend the trail ended earlier
    node.checkpoints.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    sql(node, "DELETE FROM audit_event WHERE seq = 10")
    assert "checkpoint-forged" in kinds(node)
    bad = dict(last, sig=base64.b64encode(b"x" * 64).decode())
    node.checkpoints.write_text("\n".join([*lines[:-1], json.dumps(bad), "not json"]) + "\n")
    assert {"checkpoint-forged", "checkpoint-unreadable"} <= kinds(node)


def test_checkpoints_of_a_renewed_key_verify_with_both_keys(node: Node) -> None:
    """After a certificate renewal the old checkpoints verify with the old key, the new ones with the new key."""
    renewed = node.ca.issue("site-a-2026")
    store = AuditStore(node.db, signing_key=load_signing_key(renewed.key_path), node="site-a", checkpoint_interval_s=0)
    store.record(AuditEvent(action="import", outcome="success"))
    store.close()
    status, output = verify_cli(node)  # tls.cert_file alone: the new checkpoint is not its signature
    assert status == 1 and "checkpoint-forged seq=11" in output
    done = subprocess.run([sys.executable, "-m", "drimbox", "audit", "verify", "--config", str(node.config),
                           "--public-key", str(node.cert), "--public-key", str(renewed.cert_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_deleted_checkpoint_file_is_detected(node: Node) -> None:
    node.checkpoints.unlink()
    status, output = verify_cli(node)
    assert status == 1 and "no-checkpoint" in output


def test_records_from_threads_and_two_connections_keep_one_chain(node: Node) -> None:
    """Eight threads on one store and four on a second store (another connection, as another process)."""
    first, second = node.store(checkpoint_every=7), node.store(checkpoint_every=5)
    errors: list[BaseException] = []

    def write(store: AuditStore, worker: int) -> None:
        try:
            for i in range(25):
                store.record(AuditEvent(action="wado.instance-served", outcome="success", node=f"peer-{worker}",
                                        detail=f"{worker}/{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(first if n < 8 else second, n)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    first.close()
    second.close()
    assert not errors
    records = read_records(node.db)
    assert [r.seq for r in records] == list(range(1, 10 + 12 * 25 + 1))
    details = sorted(r.event().detail for r in records[10:])
    assert details == sorted(f"{w}/{i}" for w in range(12) for i in range(25))
    status, output = verify_cli(node)
    assert status == 0, output


def test_idle_store_checkpoints_on_its_timer(node: Node) -> None:
    store = node.store(checkpoint_every=1000, checkpoint_interval_s=0.2)
    try:
        store.record(AuditEvent(action="portal.patient", outcome="success", patient_ins=INS_A))
        deadline = time.monotonic() + 10
        while json.loads(node.checkpoints.read_text().splitlines()[-1])["seq"] != 11:
            assert time.monotonic() < deadline, "no checkpoint of the idle head"
            time.sleep(0.05)
        assert store.checkpoint() == 11
    finally:
        store.close()
    assert kinds(node) == set()


def test_events_api_is_unchanged(node: Node) -> None:
    store = AuditStore(node.db)  # no key: reading and chaining work, no checkpoint is written
    try:
        calls = list(store.events(action="contextual-call"))
        assert [e.outcome for e in calls] == ["success", "refused", "success"]
        assert [e.emergency for e in calls] == [False, False, True]
        later = list(store.events(since=datetime(2026, 3, 8, tzinfo=UTC)))
        assert [e.action for e in later] == ["dimse.move", "contextual-call", "contextual-call"]
        assert later[0].at == datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
        assert [e.action for e in store.events(patient_ins=INS_B)] == ["portal.patient", "xdm.export",
                                                                        "contextual-call"]
        store.record(AuditEvent(action="import", outcome="failure"))
        assert store.checkpoint() is None
    finally:
        store.close()
    assert [json.loads(line)["seq"] for line in node.checkpoints.read_text().splitlines()] == [4, 8, 10]
    assert verify_audit(node.db, node.checkpoints, load_verify_key(node.cert)).uncovered == 1


def test_store_from_before_the_chain_is_chained_on_open(tmp_path: Path, node: Node) -> None:
    """A database written by the previous AuditStore (no chain columns) is migrated and chained once."""
    legacy = tmp_path / "legacy" / "audit.sqlite"
    legacy.parent.mkdir()
    db = sqlite3.connect(legacy, isolation_level=None)
    db.executescript("""CREATE TABLE audit_event (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,
        action TEXT NOT NULL, outcome TEXT NOT NULL, patient_ins TEXT, study_uid TEXT, kos_uid TEXT,
        body TEXT NOT NULL);""")
    for event in _events()[:3]:
        data = asdict(event)  # the old writer's body: asdict, isoformat, list of UIDs
        data["at"] = event.at.isoformat()
        data["sop_instance_uids"] = list(event.sop_instance_uids)
        db.execute("INSERT INTO audit_event (at, action, outcome, patient_ins, study_uid, kos_uid, body)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)", (data["at"], event.action, event.outcome, event.patient_ins,
                                                     event.study_uid, event.kos_uid,
                                                     json.dumps(data, ensure_ascii=False, sort_keys=True)))
    db.close()
    store = AuditStore(legacy, signing_key=load_signing_key(node.key), node="site-a", checkpoint_interval_s=0)
    store.record(AuditEvent(action="import", outcome="success"))
    assert [e.action for e in store.events()] == ["contextual-call", "registry.find", "wado.instance-served", "import"]
    store.close()
    report = verify_audit(legacy, checkpoints_path_for(legacy), load_verify_key(node.cert))
    assert report.ok and report.records == 4 and report.last_checkpoint_seq == 4


def export_cli(node: Node, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "drimbox", "audit", "export", "--config", str(node.config), *args],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_export_for_one_patient_lists_only_their_events(node: Node) -> None:
    bundle = json.loads(export_cli(node, "--since", "2026-01-01", "--patient", INS_A))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    resources = [entry["resource"] for entry in bundle["entry"]]
    # Their contextual calls, the registry look-up, the instances served under their KOS (no INS in that
    # event), the import and the move of their study — nothing about patient B or another KOS.
    assert [r["subtype"][0]["code"] for r in resources] == [
        "contextual-call", "registry.find", "wado.instance-served", "import", "dimse.move", "contextual-call"]
    assert all(r["resourceType"] == "AuditEvent" for r in resources)
    text = json.dumps(bundle)
    assert INS_B not in text and STUDY_B not in text
    served = resources[2]
    assert served["type"]["code"] == "110104"
    assert served["agent"][1]["who"] == {"identifier": {"system": "urn:drimbox:node", "value": "site-b"}}
    assert [e["description"] for e in served["entity"]] == ["study", "KOS manifest", "instance", "instance"]
    assert resources[-1]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert "purposeOfEvent" not in resources[0]
    assert resources[0]["agent"][0]["who"]["identifier"] == {"system": "urn:oid:1.2.250.1.71.4.2.1",
                                                             "value": "810001234567"}
    assert resources[0]["entity"][0]["what"]["identifier"]["value"] == INS_A


def test_export_since_and_jsonl(node: Node) -> None:
    lines = export_cli(node, "--since", "2026-03-06", "--format", "jsonl").splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["recorded"][:10] for e in events] == [f"2026-03-{d:02d}" for d in range(6, 11)]
    refused = events[0]
    assert refused["outcome"] == "4" and refused["outcomeDesc"] == "outside the manifest"
    assert refused["id"] == "site-a-audit-6"
    assert json.loads(export_cli(node, "--since", "2027-01-01"))["entry"] == []


def test_fhir_mapping_of_an_event_without_a_user() -> None:
    event = AuditEvent(action="registry.find", outcome="failure", source="127.0.0.9")
    resource = fhir_audit_event(event, node="site-a")
    assert resource["type"]["code"] == "110112" and resource["outcome"] == "8"
    assert resource["agent"] == [{"requestor": True, "who": {"display": "127.0.0.9"},
                                  "network": {"address": "127.0.0.9", "type": "2"}}]
    assert resource["source"]["site"] == "site-a"


class Collector:
    """A minimal RFC 5425 syslog collector on loopback: TLS (client certificate required), octet-counted frames."""

    def __init__(self, ca: TestCA, port: int = 0) -> None:
        issued = ca.issue("collector", hosts=["127.0.0.1"])
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.cert_path))
        self.context.load_cert_chain(str(issued.cert_path), str(issued.key_path))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.messages: list[bytes] = []
        self.peers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5.0)
            with self.context.wrap_socket(raw, server_side=True) as conn:
                cert = x509.load_der_x509_certificate(conn.getpeercert(binary_form=True) or b"")
                self.peers.append(str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value))
                buffer = b""
                while not self._stop.is_set():
                    try:
                        chunk = conn.recv(65536)
                    except (TimeoutError, ssl.SSLError, OSError):
                        break
                    if not chunk:
                        break
                    buffer += chunk
                    while b" " in buffer:
                        length, _, rest = buffer.partition(b" ")
                        if len(rest) < int(length):
                            break
                        self.messages.append(rest[:int(length)])
                        buffer = rest[int(length):]

    def wait_for(self, count: int) -> list[bytes]:
        deadline = time.monotonic() + 15
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"collector got {len(self.messages)} of {count} messages"
            time.sleep(0.05)
        return self.messages

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.listener.close()


def test_events_and_checkpoints_are_forwarded_to_a_tls_syslog_collector(node: Node) -> None:
    collector = Collector(node.ca)
    client = node.ca.issue("site-a-syslog")
    forwarder = SyslogForwarder("127.0.0.1", collector.port,
                                tls_client_context(node.ca.cert_path, client.cert_path, client.key_path),
                                hostname="site-a", retry_s=0.2)
    store = node.store(checkpoint_every=2, on_recorded=forwarder, on_checkpoint=forwarder.checkpoint)
    try:
        store.record(AuditEvent(action="wado.kos-scope", outcome="refused", node="site-c", detail='say "no"]'))
        store.record(AuditEvent(action="contextual-call", outcome="success", patient_ins=INS_A, emergency=True))
        messages = collector.wait_for(3)  # two events, then the checkpoint at seq 12
    finally:
        store.close()
        forwarder.close()
        collector.close()
    assert collector.peers == ["site-a-syslog"]
    assert forwarder.dropped == 0
    records = {r.seq: r for r in read_records(node.db)}
    refused, emergency, checkpoint = (m.decode("utf-8") for m in messages[:3])  # seq order, then its checkpoint
    # <PRI>: facility 13 (log audit) * 8 + severity 4 (warning) / 6 (informational).
    assert refused.startswith("<108>1 ") and emergency.startswith("<110>1 ")
    header, _, body = refused.partition("\ufeff")
    fields = header.split(" ")
    assert fields[2:4] == ["site-a", "drimbox"] and fields[5] == "wado.kos-scope"
    assert f'[drimbox@32473 seq="11" hash="{records[11].hash}" outcome="refused"]' in header
    assert json.loads(body)["outcomeDesc"] == 'say "no"]'
    resource = json.loads(emergency.partition("\ufeff")[2])
    assert resource["resourceType"] == "AuditEvent" and resource["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert " checkpoint " in checkpoint and f'seq="12" hash="{records[12].hash}"' in checkpoint


def test_forwarder_resends_once_the_collector_is_up(node: Node) -> None:
    """The collector is down when the events are recorded: they are queued, not lost, and recording never waits."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there yet
    client = node.ca.issue("site-a-syslog")
    forwarder = SyslogForwarder("127.0.0.1", port, tls_client_context(node.ca.cert_path, client.cert_path,
                                                                      client.key_path),
                                hostname="site-a", retry_s=0.1, connect_timeout_s=1.0)
    store = node.store(on_recorded=forwarder)
    collector: Collector | None = None
    try:
        started = time.monotonic()
        for n in range(3):
            store.record(AuditEvent(action="import", outcome="success", detail=str(n)))
        assert time.monotonic() - started < 2.0
        time.sleep(0.3)
        collector = Collector(node.ca, port)
        messages = collector.wait_for(3)
    finally:
        store.close()
        forwarder.close()
        if collector is not None:
            collector.close()
    assert [json.loads(m.decode().partition("\ufeff")[2])["outcomeDesc"] for m in messages] == ["0", "1", "2"]


def test_node_store_signs_with_its_tls_key(node: Node) -> None:
    """``AuditStore.for_node``: the store the node builds from its settings checkpoints with ``tls.key_file``."""
    settings = load_settings(node.config)
    store = AuditStore.for_node(settings)
    try:
        assert store.path == node.db
        store.record(AuditEvent(action="registry.find", outcome="success", patient_ins=INS_A))
    finally:
        store.close()
    last = json.loads(node.checkpoints.read_text().splitlines()[-1])
    assert (last["seq"], last["node"], last["alg"]) == (11, "site-a", "ES256")
    assert verify_cli(node)[0] == 0


def test_verify_without_a_key_is_a_configuration_error(node: Node, tmp_path: Path) -> None:
    config = tmp_path / "nokey.toml"
    config.write_text(tomli_w.dumps({"name": "site-a", "pacs": {"aet": "PACS", "host": "127.0.0.1", "port": 4242},
                                     "storage": {"data_dir": str(node.db.parent)}}))
    done = subprocess.run([sys.executable, "-m", "drimbox", "audit", "verify", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "tls.cert_file" in done.stderr
