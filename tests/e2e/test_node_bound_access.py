"""Acceptance (issue 7, DESIGN §2b) on the running demo: tokens bound to the node presenting them, and
work without a user — the consumer's own credential from the real identity provider (client credentials),
admitted by the source for one KOS only under a grant the consumer asked for while its user was there."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from drimbox.config import NodeSettings
from drimbox.retrieve.model import Actor, Exam
from drimbox.retrieve.transfer import ACCEPT_DICOM, StudyRetriever
from drimbox.trust.audit import AuditEvent, AuditStore
from drimbox.trust.node_credential import DeferredAccess, NodeCredential, network_base_url
from drimbox.trust.oidc import OidcRelyingParty
from drimbox.trust.peers import HostListPolicy, network_client
from drimbox.trust.tokens import build_token_verifier
from tests.e2e.conftest import Net
from tests.e2e.exams import published_exams


@pytest.fixture(scope="module")
def exam(net: Net) -> Exam:
    """Site A's current screening mammography (4 views), as the registry lists it."""
    found = published_exams(net.endpoints["registry"]["fhir"], net.token(), net.screened_patient)
    return max(found, key=lambda e: e.performed or datetime.min.replace(tzinfo=UTC))


@pytest.fixture
def site_b(net: Net, tmp_path: Path) -> NodeSettings:
    """Site B's settings (its address, certificate, OIDC client), with a data directory of the test's own."""
    return net.settings("site-b", storage={"data_dir": str(tmp_path / "site-b")})


@pytest.fixture
def source_audit(net: Net) -> Iterator[AuditStore]:
    """Site A's audit store (the running node's), read alongside it."""
    store = AuditStore(net.settings("site-a").storage.data_dir / "audit.sqlite")
    yield store
    store.close()


def _tool_client(net: Net) -> httpx.Client:
    """The test tool of endpoints.json: its certificate, from its own trust-listed address."""
    tls = net.endpoints["tls"]
    context = ssl.create_default_context(cafile=tls["ca"])
    context.load_cert_chain(tls["client_cert"], tls["client_key"])
    return httpx.Client(verify=context, timeout=20,
                        transport=httpx.HTTPTransport(verify=context, local_address="127.0.0.1"))


def _metadata_url(exam: Exam) -> str:
    return f"{exam.series[0].retrieve_url}/metadata"


def _headers(exam: Exam, token: str) -> dict[str, str]:
    return {"Accept": "application/dicom+json", "Authorization": f"Bearer {token}", "KOS-SOPInstanceUID": exam.kos_uid}


def _since(audit: AuditStore, action: str, started: datetime) -> list[AuditEvent]:
    return list(audit.events(action=action, since=started))


def test_token_of_another_node_is_refused_and_audited(net: Net, exam: Exam, source_audit: AuditStore) -> None:
    started = datetime.now(UTC)
    with _tool_client(net) as tool:
        # A token site B's users got, replayed by another trust-listed peer (the test tool).
        stolen = tool.get(_metadata_url(exam), headers=_headers(exam, net.token(client="site-b")))
        own = tool.get(_metadata_url(exam), headers=_headers(exam, net.token(client="tool")))
        unbound = tool.get(_metadata_url(exam), headers=_headers(exam, net.token(client="not-a-node")))
    assert stolen.status_code == 401, stolen.text
    assert "does not belong to the presenting node" in stolen.json()["detail"]
    assert unbound.status_code == 401
    assert own.status_code == 200, own.text
    assert len(own.json()) == len(exam.series[0].instances)
    refused = _since(source_audit, "auth.refused", started)
    assert any("'site-b'" in e.detail and e.source == "127.0.0.1" for e in refused), refused
    assert any("'not-a-node'" in e.detail for e in refused), refused


def test_each_token_refusal_is_audited(net: Net, exam: Exam, source_audit: AuditStore) -> None:
    started = datetime.now(UTC)
    with _tool_client(net) as tool:
        missing = tool.get(_metadata_url(exam), headers={"KOS-SOPInstanceUID": exam.kos_uid})
        expired = tool.get(_metadata_url(exam), headers=_headers(exam, net.token(client="tool", ttl_s=-120)))
        forged = tool.get(_metadata_url(exam), headers=_headers(exam, net.token(client="tool")[:-6] + "AAAAAA"))
    assert (missing.status_code, expired.status_code, forged.status_code) == (401, 401, 401)
    details = [e.detail for e in _since(source_audit, "auth.refused", started)]
    assert len(details) >= 3, details
    assert any("bearer token" in d for d in details) and any("expired" in d.lower() for d in details)


def test_node_credential_needs_a_grant_for_the_kos(net: Net, exam: Exam, site_b: NodeSettings,
                                                   source_audit: AuditStore) -> None:
    verifier = build_token_verifier(site_b.auth)
    party = OidcRelyingParty.from_settings(site_b, verifier)
    credential = NodeCredential(party, site_b.name, scope=site_b.auth.audience)
    started = datetime.now(UTC)
    try:
        node_token = credential.token()  # from the real provider, by client credentials
        assert verifier.verify(node_token).kind == "node"
        assert credential.token() == node_token  # cached until shortly before it expires
        with network_client(site_b) as client:  # mutual TLS from site B's own address
            before = client.get(_metadata_url(exam), headers=_headers(exam, node_token))
            assert before.status_code == 403, before.text
            assert "KOS grant" in before.json()["detail"]
            access = DeferredAccess(credential, client, HostListPolicy(site_b.peers.hosts), ttl_s=600)
            user = Actor(subject="rpps:10101010101", rpps="10101010101", role="radiologist", display_name=None,
                         token=net.token(client="site-b"))
            assert access.prepare(exam, user)
            after = client.get(_metadata_url(exam), headers=_headers(exam, node_token))
            assert after.status_code == 200, after.text
            # The grant is for this KOS only.
            other = next(e for e in published_exams(net.endpoints["registry"]["fhir"], net.token(), net.ct_patient))
            elsewhere = client.get(_metadata_url(other), headers=_headers(other, node_token))
            assert elsewhere.status_code == 403
            # A node's own token cannot grant itself anything.
            self_grant = client.post(f"{network_base_url(exam)}/api/grants", json={"kos": other.kos_uid},
                                     headers={"Authorization": f"Bearer {node_token}"})
            assert self_grant.status_code == 403, self_grant.text
    finally:
        party.close()
    issued = _since(source_audit, "grant.issued", started)
    assert len(issued) == 1 and issued[0].kos_uid == exam.kos_uid and issued[0].rpps == "10101010101"
    assert "node 127.0.0.3" in issued[0].detail
    served = [e for e in _since(source_audit, "wado.metadata-served", started) if "grant " in e.detail]
    assert {sop for e in served for sop in e.sop_instance_uids} == {
        i.sop_instance_uid for i in exam.series[0].instances}
    assert all(e.node == "127.0.0.3" and e.rpps is None for e in served)


def test_whole_exam_retrieved_with_the_node_credential_under_a_grant(net: Net, exam: Exam, site_b: NodeSettings,
                                                                      tmp_path: Path) -> None:
    party = OidcRelyingParty.from_settings(site_b, build_token_verifier(site_b.auth))
    policy = HostListPolicy(site_b.peers.hosts)
    retriever = StudyRetriever(site_b, policy)
    try:
        access = DeferredAccess(NodeCredential(party, site_b.name, scope=site_b.auth.audience), retriever.client,
                                policy)
        user = Actor(subject="rpps:10101010101", rpps="10101010101", role="radiologist", display_name=None,
                     token=net.token(client="site-b"))
        assert access.prepare(exam, user, purpose="prefetch")
        report = retriever.retrieve(exam, access.actor(on_behalf_of=user.subject), tmp_path / "got")
    finally:
        retriever.close()
        party.close()
    assert report.complete, report
    assert set(report.received) == exam.sop_instance_uids()


def test_a_grant_request_is_refused_for_a_kos_the_source_does_not_publish(net: Net, exam: Exam,
                                                                         site_b: NodeSettings) -> None:
    with network_client(site_b) as client:
        answer = client.post(f"{network_base_url(exam)}/api/grants", json={"kos": "1.2.3.4.5.6.7"},
                             headers={"Authorization": f"Bearer {net.token(client='site-b')}", "Accept": ACCEPT_DICOM})
        bad = client.post(f"{network_base_url(exam)}/api/grants", json={"kos": "1.2.x", "ttl_s": 10**9},
                          headers={"Authorization": f"Bearer {net.token(client='site-b')}"})
    assert answer.status_code == 403 and "not a current manifest" in answer.json()["detail"]
    assert bad.status_code == 422
