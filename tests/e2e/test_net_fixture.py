"""The shared demo network starts, and site A's samples are in the registry (a smoke check of the fixture)."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import Net


def test_network_is_up_and_published(net: Net) -> None:
    with httpx.Client(timeout=10) as client:
        for node in net.endpoints["nodes"]:
            assert client.get(f"{node['base_url']}/healthz").status_code == 200
