"""KOS imaging manifests (DESIGN §3, F3/F4) and IOCM rejection notes.

- :func:`build_manifest` / :class:`ManifestBuilder` — the KOS of an exam from a PACS walk and its
  report: every series with its RetrieveURL, every instance, the INS triple, the request.
- :func:`encode_manifest` — its Part 10 bytes; :func:`manifest_uid` — its deterministic UID.
- :func:`read_rejection_note` — an IOCM rejection note (KOS titled with a CID 7031 reason) as a
  :class:`RejectionNote`.

Errors derive from :class:`ManifestError` (all permanent for the same inputs).
"""

from drimbox.manifest.errors import (
    EmptyStudy,
    IdentityNotQualified,
    IncompleteEvidence,
    ManifestError,
    NotARejectionNote,
)
from drimbox.manifest.evidence import ReferenceKind, reference_kind
from drimbox.manifest.kos import (
    KOS_SOP_CLASS,
    BuiltManifest,
    ManifestBuilder,
    ManifestOptions,
    RetrieveUrl,
    build_manifest,
    encode_manifest,
    series_retrieve_url,
)
from drimbox.manifest.patient import INS_ISSUER
from drimbox.manifest.rejection import (
    RejectedInstance,
    RejectionNote,
    RejectionReason,
    is_rejection_note,
    read_rejection_note,
)
from drimbox.manifest.uids import manifest_series_uid, manifest_uid

__all__ = [
    "INS_ISSUER",
    "KOS_SOP_CLASS",
    "BuiltManifest",
    "EmptyStudy",
    "IdentityNotQualified",
    "IncompleteEvidence",
    "ManifestBuilder",
    "ManifestError",
    "ManifestOptions",
    "NotARejectionNote",
    "ReferenceKind",
    "RejectedInstance",
    "RejectionNote",
    "RejectionReason",
    "RetrieveUrl",
    "build_manifest",
    "encode_manifest",
    "is_rejection_note",
    "manifest_series_uid",
    "manifest_uid",
    "read_rejection_note",
    "reference_kind",
    "series_retrieve_url",
]
