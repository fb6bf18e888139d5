"""Acceptance (issue 7, F11) on the running demo: the nodes take the registry's signed trust list, and
a peer at its own loopback address whose certificate is valid (same CA) but whose host is not on the
list is refused by the network face — while the listed test tool is let through to the manifest scope."""

from __future__ import annotations

import ssl

import httpx

from tests.e2e.conftest import Net


def _client(net: Net, cert: str, key: str, local_address: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=net.endpoints["tls"]["ca"])
    context.load_cert_chain(cert, key)
    return httpx.Client(verify=context, timeout=15, transport=httpx.HTTPTransport(verify=context,
                                                                                 local_address=local_address))


def test_unlisted_peer_with_a_valid_certificate_is_refused(net: Net) -> None:
    assert net.network.ca is not None
    stranger = net.network.ca.issue("stranger", hosts=["127.0.0.9"])
    url = f"{net.node('site-a')['network_dicomweb']}/studies/1.2.3"
    headers = {"Authorization": f"Bearer {net.token(client='tool')}"}
    with _client(net, str(stranger.cert_path), str(stranger.key_path), "127.0.0.9") as client:
        refused = client.get(url, headers=headers)
    assert refused.status_code == 403, refused.text
    assert "trust list" in refused.text
    tls = net.endpoints["tls"]
    with _client(net, tls["client_cert"], tls["client_key"], "127.0.0.1") as client:
        listed = client.get(url, headers=headers)
    assert listed.status_code == 400  # past the peer check: the manifest scope wants KOS-SOPInstanceUID
    assert "KOS-SOPInstanceUID" in listed.text


def test_registry_publishes_the_list_the_nodes_verify(net: Net) -> None:
    with httpx.Client(timeout=10) as client:
        published = client.get(net.endpoints["registry"]["whitelist"])
    assert published.status_code == 200
    assert b"ListeBlancheDRIM-M" in published.content and b"ds:Signature" in published.content
    for site in ("site-a", "site-b"):
        saved = net.settings(site).trust_list.file
        assert saved is not None and saved.read_bytes() == published.content  # verified, then kept on disk
