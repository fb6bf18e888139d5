"""Forwarding of audit events to a syslog collector: RFC 5424 messages over RFC 5425 TLS transport.

A copy of the trail outside the node is what reveals a tail cut after the last signed checkpoint or a
deleted checkpoint file (see :mod:`drimbox.trust.audit_verify`), so the forwarder also sends each
checkpoint. It is a *copy*: :class:`~drimbox.trust.audit.AuditStore` calls it after its commit, it only
enqueues (never blocks an access on the collector), and one background thread sends, reconnecting after
a failure and resending the message that failed. When the queue is full (collector down for long),
new messages are dropped and counted in :attr:`SyslogForwarder.dropped` — the database stays complete.

Message (RFC 5424 §6): ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [drimbox@32473 seq= hash=
outcome=] BOM{FHIR AuditEvent JSON}`` with facility 13 (log audit), severity 6 (success), 4 (refused)
or 3 (failure); MSGID the action (``checkpoint`` for checkpoints). Framing (RFC 5425 §4.3, octet
counting): ``MSG-LEN SP SYSLOG-MSG``. 32473 is the private enterprise number RFC 5612 reserves for
examples; a deployment with its own number sets ``sd_id``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import ssl
import threading
from datetime import UTC, datetime
from pathlib import Path

from drimbox.trust.audit import AuditEvent
from drimbox.trust.audit_fhir import fhir_audit_event

__all__ = ["SyslogForwarder", "format_rfc5424", "tls_client_context"]

_log = logging.getLogger(__name__)

_FACILITY_LOG_AUDIT = 13
_SEVERITY = {"success": 6, "refused": 4, "failure": 3}
_BOM = "\ufeff"


def _ascii_token(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, ``-`` when empty."""
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)[:limit]
    return cleaned or "-"


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_rfc5424(*, severity: int, at: datetime, hostname: str, app_name: str, msgid: str,
                   params: dict[str, str], message: str, sd_id: str = "drimbox@32473") -> bytes:
    """One RFC 5424 message (UTF-8, BOM before MSG), without transport framing."""
    when = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sd = "[" + sd_id + "".join(f' {name}="{_sd_value(value)}"' for name, value in params.items()) + "]"
    header = (f"<{_FACILITY_LOG_AUDIT * 8 + severity}>1 {when} {_ascii_token(hostname, 255)} "
              f"{_ascii_token(app_name, 48)} {os.getpid()} {_ascii_token(msgid, 32)} {sd}")
    return f"{header} {_BOM}{message}".encode()


def tls_client_context(ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    """TLS 1.2+ client context trusting ``ca_file``, with the node's certificate for mutual TLS (RFC 5425 §5)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    return context


class SyslogForwarder:
    """Sends audit events and checkpoints to one collector over TLS; pass it as ``AuditStore(on_recorded=…,
    on_checkpoint=…)`` (or to :meth:`AuditStore.for_node`)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, *, hostname: str, app_name: str = "drimbox",
                 sd_id: str = "drimbox@32473", queue_size: int = 10_000, retry_s: float = 2.0,
                 connect_timeout_s: float = 5.0) -> None:
        self.host, self.port, self.context = host, port, context
        self.hostname, self.app_name, self.sd_id = hostname, app_name, sd_id
        self.dropped = 0
        self.sent = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._retry_s = retry_s
        self._timeout = connect_timeout_s
        self._stop = threading.Event()
        self._sock: ssl.SSLSocket | None = None
        self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
        self._thread.start()

    def __call__(self, event: AuditEvent, seq: int, digest: str) -> None:
        """Queue one recorded event (the ``on_recorded`` hook of the store)."""
        resource = fhir_audit_event(event, node=self.hostname, seq=seq, record_hash=digest)
        self._put(format_rfc5424(
            severity=_SEVERITY.get(event.outcome, 3), at=event.at, hostname=self.hostname, app_name=self.app_name,
            msgid=event.action, params={"seq": str(seq), "hash": digest, "outcome": event.outcome},
            message=json.dumps(resource, ensure_ascii=False, separators=(",", ":")), sd_id=self.sd_id))

    def checkpoint(self, line: dict[str, object]) -> None:
        """Queue one signed checkpoint (the ``on_checkpoint`` hook of the store)."""
        self._put(format_rfc5424(
            severity=6, at=datetime.now(UTC), hostname=self.hostname, app_name=self.app_name, msgid="checkpoint",
            params={"seq": str(line["seq"]), "hash": str(line["hash"])},
            message=json.dumps(line, sort_keys=True, separators=(",", ":")), sd_id=self.sd_id))

    def _put(self, message: bytes) -> None:
        try:
            self._queue.put_nowait(b"%d " % len(message) + message)
        except queue.Full:
            self.dropped += 1

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=self._timeout)
        try:
            return self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise

    def _run(self) -> None:
        pending: bytes | None = None
        while True:
            if pending is None:
                try:
                    pending = self._queue.get(timeout=0.5)
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    continue
                if pending is None:  # close(): everything before it was sent or given up
                    break
            try:
                if self._sock is None:
                    self._sock = self._connect()
                self._sock.sendall(pending)
                self.sent += 1
                pending = None
            except (OSError, ssl.SSLError) as exc:
                _log.warning("audit: syslog collector %s:%s unreachable (%s); retrying", self.host, self.port, exc)
                self._drop_socket()
                if self._stop.wait(self._retry_s):
                    break
        self._drop_socket()

    def _drop_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to ``timeout_s``), then stop the thread and close the connection."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout=timeout_s)
        self._stop.set()
        self._thread.join(timeout=timeout_s)
