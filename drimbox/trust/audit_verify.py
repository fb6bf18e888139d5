"""Verification of the audit trail: the hash chain in the database against the signed checkpoints beside it.

What each check reveals (each finding has a stable ``kind`` that the CLI prints and tests match):

=========================  ===========================================================================
``record-modified``        a row's stored hash is not the hash of its (seq, prev_hash, body) — its body
                           or its hash was changed (or its chain columns emptied)
``column-mismatch``        an indexed column (``patient_ins``, ``action`` …) no longer says what the
                           hashed body says — a query/export would be misled
``body-unreadable``        the body is not an audit event any more
``record-deleted``         a gap in ``seq`` (one or more rows removed)
``head-deleted``           the first row is not ``seq`` 1 with the genesis ``prev_hash``
``record-reordered``       a row links to a row that now comes after it (rows swapped / renumbered)
``chain-broken``           a row's ``prev_hash`` is not its predecessor's hash, with no gap or swap to
                           explain it (a row inserted, or a chain recomputed from a point on)
``tail-truncated``         a signed checkpoint names a ``seq`` beyond the last row (the tail was cut)
``checkpoint-mismatch``    a signed checkpoint's hash differs from the row's: rows up to it were
                           rewritten, even if the chain was recomputed to look valid
``checkpoint-forged``      a checkpoint's signature does not verify with the node's public key
``checkpoint-unreadable``  a line of the checkpoint file is not a checkpoint
``no-checkpoint``          records exist but no valid checkpoint covers any of them
=========================  ===========================================================================

Records written after the last checkpoint are chained but not yet signed: ``VerifyReport.uncovered``
counts them (a tail cut within them cannot be proven; the store checkpoints every N records, on a timer
and at close to keep that window small, and the optional syslog copy keeps one outside the node).
A deleted checkpoint *file* tail is not detectable from the node alone either — the same copy helps.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from drimbox.trust.audit import GENESIS_HASH, AuditRecord, chain_hash, checkpoint_payload, read_records

__all__ = ["Finding", "FindingKind", "PublicKey", "VerifyReport", "load_verify_key", "verify_audit"]

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

FindingKind = Literal[
    "record-modified", "column-mismatch", "body-unreadable", "record-deleted", "head-deleted",
    "record-reordered", "chain-broken", "tail-truncated", "checkpoint-mismatch", "checkpoint-forged",
    "checkpoint-unreadable", "no-checkpoint",
]


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of evidence of tampering, at a record ``seq`` (or a checkpoint file ``line``)."""

    kind: FindingKind
    detail: str
    seq: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f" seq={self.seq}" if self.seq is not None else ""
        where += f" checkpoint-line={self.line}" if self.line is not None else ""
        return f"{self.kind}{where}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    """The outcome of :func:`verify_audit`: ``ok`` when there is no finding."""

    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    """Checkpoints whose signature verified."""
    last_checkpoint_seq: int | None = None
    uncovered: int = 0
    """Records after the last valid checkpoint (chained, not yet signed)."""
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def kinds(self) -> set[str]:
        """The kinds of finding present (what tests and monitoring match on)."""
        return {f.kind for f in self.findings}


def load_verify_key(path: Path) -> PublicKey:
    """The public key from a PEM certificate, public key or private key file (the node's ``tls.cert_file``)."""
    data = path.read_bytes()
    key: object
    if b"-----BEGIN CERTIFICATE-----" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    elif b"PRIVATE KEY-----" in data:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ValueError(f"{path}: unsupported key type {type(key).__name__} for audit checkpoints")
    return key


def _key_id(key: PublicKey) -> str:
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _signature_ok(key: PublicKey, alg: str, signature: bytes, payload: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and alg == "ES256":
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey) and alg == "PS256":
            key.verify(signature, payload, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                       salt_length=padding.PSS.DIGEST_LENGTH), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey) and alg == "EdDSA":
            key.verify(signature, payload)
        else:
            return False  # never let the file choose an algorithm the key is not for
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    line: int
    seq: int
    hash: str


def _read_checkpoints(path: Path, keys: Sequence[PublicKey], report: VerifyReport) -> list[_Checkpoint]:
    """The checkpoints of ``path`` whose signature verifies; the others become findings."""
    by_id = {_key_id(k): k for k in keys}
    valid: list[_Checkpoint] = []
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return valid
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            seq, digest, at, node = int(item["seq"]), str(item["hash"]), str(item["at"]), str(item["node"])
            alg, signature = str(item["alg"]), base64.b64decode(item["sig"], validate=True)
            kid = item.get("kid")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            report.findings.append(Finding("checkpoint-unreadable", f"not a checkpoint ({exc})", line=number))
            continue
        candidates = [by_id[kid]] if isinstance(kid, str) and kid in by_id else list(keys)
        payload = checkpoint_payload(seq, digest, at, node)
        if not any(_signature_ok(key, alg, signature, payload) for key in candidates):
            report.findings.append(Finding("checkpoint-forged", f"signature of checkpoint seq={seq} does not verify "
                                           "with the node's public key", seq=seq, line=number))
            continue
        valid.append(_Checkpoint(number, seq, digest))
    return valid


def _check_columns(record: AuditRecord, report: VerifyReport) -> None:
    try:
        body = json.loads(record.body)
        record.event()
    except (ValueError, TypeError, KeyError) as exc:
        report.findings.append(Finding("body-unreadable", f"body is not an audit event ({exc})", seq=record.seq))
        return
    for name, value in record.columns.items():
        if body.get(name) != value:
            report.findings.append(Finding("column-mismatch", f"column {name}={value!r} but the hashed body says "
                                           f"{body.get(name)!r}", seq=record.seq))


def _check_chain(records: list[AuditRecord], report: VerifyReport) -> None:
    owner = {r.hash: r.seq for r in records if r.hash is not None}
    previous: AuditRecord | None = None
    for record in records:
        _check_columns(record, report)
        linked = owner.get(record.prev_hash) if record.prev_hash is not None else None
        if linked is not None and linked >= record.seq:
            report.findings.append(Finding("record-reordered", f"links to seq {linked}, which comes after it",
                                           seq=record.seq))
        elif record.hash is None or record.prev_hash is None \
                or chain_hash(record.seq, record.prev_hash, record.body) != record.hash:
            report.findings.append(Finding("record-modified", "stored hash does not match (seq, prev_hash, body)",
                                           seq=record.seq))
        if previous is None:
            if record.seq != 1 or record.prev_hash != GENESIS_HASH:
                report.findings.append(Finding("head-deleted", f"the trail starts at seq {record.seq}"
                                               + ("" if record.prev_hash == GENESIS_HASH else " without the genesis"),
                                               seq=record.seq))
        elif record.seq != previous.seq + 1:
            report.findings.append(Finding("record-deleted", f"seq {previous.seq + 1}..{record.seq - 1} missing",
                                           seq=record.seq))
        elif record.prev_hash != previous.hash and not (linked is not None and linked >= record.seq):
            report.findings.append(Finding("chain-broken", f"prev_hash is not the hash of seq {previous.seq}",
                                           seq=record.seq))
        previous = record


def verify_audit(db_path: Path, checkpoints_path: Path, public_key: PublicKey | Sequence[PublicKey]) -> VerifyReport:
    """Check an audit database and its checkpoint file; every inconsistency is a :class:`Finding`.

    The checkpoint file is read *before* the database: a node appends a checkpoint only after the
    records it covers are committed, so reading in this order never mistakes a live node's newest
    checkpoint for a cut tail.
    """
    keys: list[PublicKey] = [public_key] if isinstance(
        public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey) else list(public_key)
    report = VerifyReport()
    checkpoints = _read_checkpoints(checkpoints_path, keys, report)
    records = read_records(db_path)
    report.records = len(records)
    report.checkpoints = len(checkpoints)
    if records:
        report.first_seq, report.last_seq = records[0].seq, records[-1].seq
    _check_chain(records, report)
    by_seq = {r.seq: r for r in records}
    last_seq = records[-1].seq if records else 0
    for checkpoint in checkpoints:
        record = by_seq.get(checkpoint.seq)
        if checkpoint.seq > last_seq:
            report.findings.append(Finding("tail-truncated", f"signed checkpoint names seq {checkpoint.seq} but the "
                                           f"trail ends at seq {last_seq}", seq=checkpoint.seq, line=checkpoint.line))
        elif record is None:
            pass  # a gap: already a record-deleted finding
        elif record.hash != checkpoint.hash:
            report.findings.append(Finding("checkpoint-mismatch", f"signed hash {checkpoint.hash[:16]}… differs from "
                                           f"the record's {str(record.hash)[:16]}… (rewritten)", seq=checkpoint.seq,
                                           line=checkpoint.line))
    if checkpoints:
        report.last_checkpoint_seq = max(c.seq for c in checkpoints)
        report.uncovered = sum(1 for r in records if r.seq > report.last_checkpoint_seq)
    else:
        report.uncovered = len(records)
        if records:
            report.findings.append(Finding("no-checkpoint", f"{len(records)} records and no valid signed checkpoint "
                                           f"in {checkpoints_path.name}"))
    return report
