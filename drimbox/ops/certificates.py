"""Certificate and CRL monitoring: expiry of the node, organisation and trust-list signer certificates,
freshness of the configured CRLs.

:class:`CertificateMonitor` reads the files on each look (kept while their modification time does not
change, so a rotated certificate is seen at once) and gives three views of the same facts:

* :meth:`~CertificateMonitor.gauge_expiry` / :meth:`~CertificateMonitor.gauge_crls` — Prometheus gauges
  (seconds to ``notAfter`` / to ``nextUpdate``, negative once past);
* :meth:`~CertificateMonitor.check` — the readiness check: it fails when a certificate has expired or
  a CRL is past its ``nextUpdate`` (a stale CRL cannot tell a revoked signer), and logs a warning,
  once a day per item, when one expires within ``operations.certificate_warning_days``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from cryptography import x509

from drimbox.config import NodeSettings

__all__ = ["CertificateMonitor", "Deadline", "MonitorCheck"]

log = structlog.get_logger(__name__)

_DAY_S = 86400.0


@dataclass(frozen=True)
class Deadline:
    """One monitored date: a certificate's ``notAfter`` or a CRL's ``nextUpdate``."""

    role: str
    """``node``, ``organisation``, ``trust_list_signer`` (certificates) or ``crl``."""
    name: str
    """The file (or the signer's subject) it comes from."""
    at: datetime | None
    """``None``: the file could not be read (reported as a failure)."""
    error: str = ""


@dataclass(frozen=True)
class MonitorCheck:
    """The outcome of :meth:`CertificateMonitor.check`."""

    ok: bool
    detail: str


class CertificateMonitor:
    """Watches the node's certificates and CRLs (see the module docstring).

    Parameters
    ----------
    settings
        ``[tls] cert_file`` (node), ``[publish] signing_cert_file`` (organisation),
        ``[trust_list] crl_files``, ``[operations] certificate_warning_days``.
    trust_list_signer
        Returns the ``notAfter`` and subject of the signer of the trust list in force, if any.
    clock
        Seconds since the epoch (injected by tests).
    """

    def __init__(self, settings: NodeSettings,
                 trust_list_signer: Callable[[], tuple[str, datetime | None] | None] = lambda: None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.warning_s = settings.operations.certificate_warning_days * _DAY_S
        files: list[tuple[str, Path]] = []
        if settings.tls.cert_file is not None:
            files.append(("node", settings.tls.cert_file))
        organisation = settings.publish.signing_cert_file
        if organisation is not None and organisation != settings.tls.cert_file:
            files.append(("organisation", organisation))
        self.certificate_files = tuple(files)
        self.crl_files = tuple(settings.trust_list.crl_files)
        self.trust_list_signer = trust_list_signer
        self.clock = clock
        self._cache: dict[Path, tuple[float, datetime]] = {}
        self._warned: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _read(self, path: Path, reader: Callable[[bytes], datetime | None]) -> datetime | None:
        mtime = path.stat().st_mtime
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
        value = reader(path.read_bytes())
        if value is not None:
            with self._lock:
                self._cache[path] = (mtime, value)
        return value

    def certificates(self) -> list[Deadline]:
        """The monitored certificates and their ``notAfter``."""
        found: list[Deadline] = []
        for role, path in self.certificate_files:
            try:
                found.append(Deadline(role, str(path), self._read(path, _certificate_not_after)))
            except (OSError, ValueError) as exc:
                found.append(Deadline(role, str(path), None, f"unreadable: {exc}"))
        signer = self.trust_list_signer()
        if signer is not None:
            found.append(Deadline("trust_list_signer", signer[0], signer[1]))
        return found

    def crls(self) -> list[Deadline]:
        """The configured CRLs and their ``nextUpdate``."""
        found: list[Deadline] = []
        for path in self.crl_files:
            try:
                at = self._read(path, _crl_next_update)
                found.append(Deadline("crl", str(path), at, "" if at is not None else "no nextUpdate"))
            except (OSError, ValueError) as exc:
                found.append(Deadline("crl", str(path), None, f"unreadable: {exc}"))
        return found

    def gauge_expiry(self) -> Iterable[tuple[dict[str, str], float]]:
        """Seconds to expiry of each certificate (metrics)."""
        now = self.clock()
        return [({"role": d.role, "name": d.name}, d.at.timestamp() - now)
                for d in self.certificates() if d.at is not None]

    def gauge_crls(self) -> Iterable[tuple[dict[str, str], float]]:
        """Seconds to each CRL's ``nextUpdate`` (metrics)."""
        now = self.clock()
        return [({"name": d.name}, d.at.timestamp() - now) for d in self.crls() if d.at is not None]

    def check(self) -> MonitorCheck:
        """Fail on an expired certificate, a CRL past its ``nextUpdate`` or an unreadable file; warn ahead."""
        now = self.clock()
        problems: list[str] = []
        soon: list[str] = []
        for deadline in [*self.certificates(), *self.crls()]:
            what = "CRL" if deadline.role == "crl" else f"{deadline.role} certificate"
            if deadline.at is None:
                problems.append(f"{what} {deadline.name}: {deadline.error or 'no date'}")
                continue
            left = deadline.at.timestamp() - now
            when = deadline.at.astimezone(UTC).isoformat(timespec="seconds")
            if left <= 0:
                problems.append(f"{what} {deadline.name}: {'expired' if deadline.role != 'crl' else 'stale'} "
                                f"since {when}")
                log.error("certificate expired" if deadline.role != "crl" else "CRL past its nextUpdate",
                          role=deadline.role, name=deadline.name, at=when, alert=True)
            elif left <= self.warning_s:
                self._warn(deadline, left, when)
                soon.append(f"{what} {deadline.name}: {'expires' if deadline.role != 'crl' else 'next update'} "
                            f"in {left / _DAY_S:.0f} day(s)")
        if problems:
            return MonitorCheck(False, "; ".join(problems + soon))
        return MonitorCheck(True, "; ".join(["certificates valid, CRLs fresh", *soon]))

    def _warn(self, deadline: Deadline, left: float, when: str) -> None:
        key = (deadline.role, deadline.name)
        now = self.clock()
        with self._lock:
            last = self._warned.get(key)
            if last is not None and now - last < _DAY_S:
                return
            self._warned[key] = now
        event = "CRL next update soon" if deadline.role == "crl" else "certificate expires soon"
        log.warning(event, role=deadline.role, name=deadline.name, at=when, days_left=round(left / _DAY_S, 1))


def _certificate_not_after(data: bytes) -> datetime:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).not_valid_after_utc
    return x509.load_der_x509_certificate(data).not_valid_after_utc


def _crl_next_update(data: bytes) -> datetime | None:
    crl = x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----BEGIN") else x509.load_der_x509_crl(data)
    return crl.next_update_utc
