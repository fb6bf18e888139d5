"""Why a manifest cannot be built. All are permanent: retrying with the same inputs fails again.

::

    ManifestError (DrimboxError)
    ├── IdentityNotQualified    the report's identity is not qualified: no INS may be published
    ├── EmptyStudy              the PACS walk found no instance to reference
    ├── IncompleteEvidence      an instance has no SOP Class UID (the PACS did not return it)
    └── NotARejectionNote       a KOS given as an IOCM rejection note is not one
"""

from __future__ import annotations

from drimbox.errors import DrimboxError

__all__ = ["EmptyStudy", "IdentityNotQualified", "IncompleteEvidence", "ManifestError", "NotARejectionNote"]


class ManifestError(DrimboxError):
    """A KOS manifest cannot be built (or read) from what was given."""


class IdentityNotQualified(ManifestError):
    """The patient identity is not qualified (PID-32 not ``VALI``, or no INS): the KOS would have to
    carry the INS, which may only be used for a qualified identity. The publication goes to the
    dead-letter list."""


class EmptyStudy(ManifestError):
    """The study has no instance the manifest could reference."""


class IncompleteEvidence(ManifestError):
    """Some instances have no SOP Class UID in the C-FIND answers (a PACS may leave it out, PS3.4
    C.6.1.1.5); ``sop_instance_uids`` lists them. The caller must learn the class (C-GET of the
    header, WADO-RS metadata) before building the manifest."""

    def __init__(self, message: str, sop_instance_uids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.sop_instance_uids = sop_instance_uids


class NotARejectionNote(ManifestError):
    """The object is not an IOCM rejection note (a KOS titled with a CID 7031 rejection reason)."""
