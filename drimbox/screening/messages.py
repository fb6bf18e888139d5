"""Node-to-node messages of the screening workflow, over the network faces (mutual TLS).

- programme → reader's node: ``POST /screening/assignments`` (an :class:`Assignment`);
- programme → an exam's source node (when it is not the programme itself): ``POST /screening/grants``
  (grant the reader's node that KOS);
- reader's node → programme: ``POST /screening/requests/{id}/status`` (prefetched, in reading);
- reader's node → programme and L1 site: ``POST /screening/results?role=…&kos=…`` (the result SR,
  ``application/dicom``, of the exam of that KOS).

Each call goes only to a trust-listed node (the peer policy is checked before anything is sent) and
carries the bearer token of the practitioner who acted (the assigner, the second reader), which the
receiving node verifies like any other request on its network face.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import structlog

from drimbox.errors import SourceRefused, SourceUnavailable
from drimbox.screening.model import Assignment, CaseStatus
from drimbox.trust.peers import PeerPolicy

__all__ = ["NodeMessenger"]

log = structlog.get_logger(__name__)


class NodeMessenger:
    """Sends the workflow's messages with the node's mutual-TLS client."""

    def __init__(self, client: httpx.Client, policy: PeerPolicy) -> None:
        self.client = client
        self.policy = policy

    def _post(self, url: str, token: str, **kwargs: object) -> httpx.Response:
        self.policy.check_url(url)
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        try:
            response = self.client.post(url, headers=headers, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise SourceUnavailable(f"{url}: node unreachable ({type(exc).__name__}: {exc})") from exc
        if response.status_code >= 500:
            raise SourceUnavailable(f"{url}: node answered {response.status_code}")
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("detail") if isinstance(body, dict) else body
            except ValueError:
                detail = response.text[:300]
            raise SourceRefused(f"{url}: node refused ({response.status_code}): {detail}",
                                status=response.status_code)
        return response

    def assign(self, reader_node: str, assignment: Assignment, token: str) -> None:
        """Give the case to the reader's node."""
        self._post(f"{reader_node.rstrip('/')}/screening/assignments", token,
                   content=assignment.model_dump_json(), headers={"Content-Type": "application/json"})

    def grant(self, source_url: str, kos_uid: str, reader_node: str, request_id: str, token: str) -> None:
        """Ask an exam's source node to grant the reader's node its KOS for this second read."""
        self._post(f"{source_url.rstrip('/')}/screening/grants", token,
                   json={"kos_uid": kos_uid, "reader_node": reader_node, "request_id": request_id})

    def status(self, programme_url: str, request_id: str, status: CaseStatus, token: str) -> None:
        """Tell the programme where the case is (best effort: the result is what counts)."""
        try:
            self._post(f"{programme_url.rstrip('/')}/screening/requests/{request_id}/status", token,
                       json={"status": status.value})
        except (SourceUnavailable, SourceRefused) as exc:
            log.warning("screening status not delivered to the programme", request=request_id,
                        status=status.value, error=str(exc))

    def result(self, url: str, sr: bytes, token: str, roles: Sequence[str], kos_uid: str) -> None:
        """Return the result SR of the exam of ``kos_uid`` to the programme and/or the L1 site (maybe one node)."""
        self._post(f"{url.rstrip('/')}/screening/results", token, content=sr,
                   params=[*(("role", role) for role in roles), ("kos", kos_uid)],
                   headers={"Content-Type": "application/dicom"})
