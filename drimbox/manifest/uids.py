"""Deterministic UIDs of the node's manifests: a retry rebuilds the same KOS (same SOP Instance UID).

Built with pydicom's ``generate_uid(entropy_srcs=…)`` (a UUID-derived UID under pydicom's root, the
SHA-512 of the sources), so that no UID registry is needed and two nodes never collide.
"""

from __future__ import annotations

from pydicom.uid import generate_uid

__all__ = ["manifest_series_uid", "manifest_uid"]


def manifest_uid(study_instance_uid: str, set_id: str, version_number: int, revision: int = 0) -> str:
    """SOP Instance UID of the KOS of one report version of one study.

    Parameters
    ----------
    study_instance_uid
        The exam.
    set_id, version_number
        The report version (CDA ``setId``/``versionNumber``): a new version gets a new KOS.
    revision
        Incremented by the caller when the same report version is published again with other
        content (images that came after the report): a different KOS needs a different UID.
    """
    sources = ["drimbox.manifest", study_instance_uid, set_id, str(version_number), str(revision)]
    return str(generate_uid(entropy_srcs=sources))


def manifest_series_uid(study_instance_uid: str) -> str:
    """Series Instance UID of the node's manifests of one study (all versions in one series)."""
    return str(generate_uid(entropy_srcs=["drimbox.manifest.series", study_instance_uid]))
