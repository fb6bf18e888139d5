"""The DMP link's look-up on the source node: which study a KOS this node publishes shows."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from drimbox.trust.scope import PublishedManifests, parse_scope

__all__ = ["published_study_lookup"]

log = structlog.get_logger(__name__)


def published_study_lookup(manifests: PublishedManifests) -> Callable[[str], str | None]:
    """``kos_uid → Study Instance UID`` while ``manifests`` (the publication outbox) holds it as its
    exam's current, not withdrawn KOS — the same rule as the network face's manifest scope, so the
    link stops working the moment the exam is withdrawn or replaced. Several studies (a KOS may
    reference more than one) come comma-separated, as OHIF's ``StudyInstanceUIDs`` takes them.
    """

    def lookup(kos_uid: str) -> str | None:
        data = manifests.published_kos(kos_uid)
        if data is None:
            return None
        try:
            studies = parse_scope(kos_uid, data).study_uids
        except Exception as exc:  # a stored KOS the parser rejects: no link rather than a 500
            log.error("published KOS unreadable", kos_uid=kos_uid, error=f"{type(exc).__name__}: {exc}")
            return None
        return ",".join(sorted(studies)) or None

    return lookup
