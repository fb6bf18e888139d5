"""KOS grants at the source (:mod:`drimbox.trust.grants`) and the binding of network-face tokens to the
presenting node (:mod:`drimbox.trust.binding`), on real SQLite files and real ASGI requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.requests import Request

from drimbox.errors import InvalidRequest, Unauthenticated
from drimbox.trust.audit import AuditStore
from drimbox.trust.binding import NetworkBinding
from drimbox.trust.grants import MAX_GRANT_S, KosGrants
from drimbox.trust.principal import Principal

KOS = "1.2.250.1.999.1"
DOCTOR = Principal(subject="rpps:10101010101", kind="practitioner", issuer="idp", rpps="10101010101",
                   client_id="site-b", node="127.0.0.3")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def audit(tmp_path: Path) -> AuditStore:
    """A real audit store."""
    return AuditStore(tmp_path / "audit.sqlite")


def test_grant_in_force_until_it_expires_then_none(tmp_path: Path, audit: AuditStore) -> None:
    clock = Clock()
    grants = KosGrants(tmp_path / "grants.sqlite", audit, clock=clock)
    grant = grants.grant(KOS, "127.0.0.3", ttl_s=3600, purpose="prefetch", by=DOCTOR, patient_ins="283052A123456")
    assert grants.find(KOS, "127.0.0.3") == grant
    assert grants.find(KOS, "127.0.0.9") is None  # another node
    assert grants.find("1.2.3", "127.0.0.3") is None  # another KOS
    clock.now += timedelta(seconds=3599)
    assert grants.find(KOS, "127.0.0.3") is not None
    clock.now += timedelta(seconds=1)
    assert grants.find(KOS, "127.0.0.3") is None
    [issued] = audit.events(action="grant.issued")
    assert (issued.kos_uid, issued.rpps, issued.patient_ins) == (KOS, "10101010101", "283052A123456")
    assert grant.id in issued.detail and "prefetch" in issued.detail


def test_grants_survive_a_restart_and_can_be_revoked(tmp_path: Path, audit: AuditStore) -> None:
    first = KosGrants(tmp_path / "grants.sqlite", audit)
    grant = first.grant(KOS, "127.0.0.3", ttl_s=600, purpose="resume", by=None)
    first.close()
    again = KosGrants(tmp_path / "grants.sqlite", audit)
    assert again.find(KOS, "127.0.0.3") == grant
    assert again.revoke(grant.id, by=DOCTOR)
    assert not again.revoke(grant.id)
    assert again.find(KOS, "127.0.0.3") is None
    assert [e.action for e in audit.events() if e.action.startswith("grant.")] == ["grant.issued", "grant.revoked"]


@pytest.mark.parametrize("ttl_s", [0, -1, MAX_GRANT_S + 1])
def test_grant_duration_is_bounded(tmp_path: Path, audit: AuditStore, ttl_s: float) -> None:
    grants = KosGrants(tmp_path / "grants.sqlite", audit)
    with pytest.raises(InvalidRequest, match="at most"):
        grants.grant(KOS, "127.0.0.3", ttl_s=ttl_s, purpose="resume", by=DOCTOR)
    assert list(audit.events(action="grant.issued")) == []


def _request(host: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "client": (host, 50000)})


def test_binding_accepts_a_token_of_the_presenting_nodes_client_only() -> None:
    names = {"127.0.0.3": ("127.0.0.3", "2"), "127.0.0.1": ("127.0.0.1", "3")}
    binding = NetworkBinding({"2": ["site-b"], "127.0.0.1": ["tool"]}, peer_names=lambda h: names.get(h, ()))
    token = Principal(subject="rpps:1", kind="practitioner", issuer="idp", client_id="site-b")
    assert binding.bind(_request("127.0.0.3"), token).node == "127.0.0.3"  # by trust-list Identifiant
    with pytest.raises(Unauthenticated, match="does not belong to the presenting node '127.0.0.1'"):
        binding.bind(_request("127.0.0.1"), token)
    with pytest.raises(Unauthenticated, match="has no registered OIDC client"):
        binding.bind(_request("127.0.0.7"), token)
    with pytest.raises(Unauthenticated, match="names no client"):
        binding.bind(_request("127.0.0.3"), Principal(subject="rpps:1", kind="practitioner", issuer="idp"))


def test_binding_off_only_labels_the_peer() -> None:
    binding = NetworkBinding({}, required=False)
    token = Principal(subject="rpps:1", kind="practitioner", issuer="idp", client_id="anything")
    assert binding.bind(_request("127.0.0.3"), token).node == "127.0.0.3"
