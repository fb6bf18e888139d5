"""The node's exception tree.

Every error the node raises on purpose derives from :class:`DrimboxError`, so a caller can catch
the whole family in one place (the CLI turns them into one-line messages, the HTTP app into 4xx/5xx
responses, the DIMSE SCP into failure statuses)::

    DrimboxError
    ├── ConfigError                 bad or missing settings (names the key)
    ├── InvalidQuery                a C-FIND/retrieve request the node refuses to send (unknown keyword, …)
    ├── PacsError                   anything that went wrong talking to a DICOM peer
    │   ├── AssociationRejected     the peer refused the association (reason given)
    │   ├── AssociationAborted      the association was aborted mid-operation
    │   ├── PacsUnreachable         connection refused / no route / DNS
    │   ├── PacsTimeout             ACSE, DIMSE or network timeout elapsed
    │   ├── NoAcceptableContext     the peer accepted none of the contexts an operation needs
    │   ├── DimseFailure            the peer answered a failure status (status kept)
    │   ├── StudyNotFound           the peer has no study with the requested Study Instance UID
    │   └── RetrieveIncomplete      a C-GET/C-MOVE ended with failed or missing sub-operations
    └── AuthError                   the request is not authenticated or not authorised
        ├── Unauthenticated         no, invalid or expired credentials (HTTP 401)
        └── Forbidden               authenticated, but not allowed (HTTP 403)
"""

from __future__ import annotations

__all__ = [
    "AssociationAborted",
    "AssociationRejected",
    "AuthError",
    "ConfigError",
    "DimseFailure",
    "DrimboxError",
    "Forbidden",
    "InvalidQuery",
    "NoAcceptableContext",
    "PacsError",
    "PacsTimeout",
    "PacsUnreachable",
    "RetrieveIncomplete",
    "StudyNotFound",
    "Unauthenticated",
]


class DrimboxError(Exception):
    """Base of every error the node raises on purpose."""


class ConfigError(DrimboxError):
    """Settings are missing, malformed or out of range; the message names the key."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class InvalidQuery(DrimboxError, ValueError):
    """A query or retrieve request is malformed: unknown keyword, bad matching value, broken hierarchy.

    Raised before anything is sent, so it is the caller's error (HTTP 400), not the peer's.
    """


class PacsError(DrimboxError):
    """Talking to a DICOM peer failed."""


class AssociationRejected(PacsError):
    """The peer rejected the association request (A-ASSOCIATE-RJ)."""


class AssociationAborted(PacsError):
    """The association was aborted (A-ABORT / A-P-ABORT) while an operation was in progress."""


class PacsUnreachable(PacsError):
    """No TCP connection could be made to the peer."""


class PacsTimeout(PacsError):
    """The peer did not answer within the configured ACSE, DIMSE or network timeout."""


class NoAcceptableContext(PacsError):
    """The peer accepted none of the presentation contexts the operation needs."""


class DimseFailure(PacsError):
    """The peer answered with a failure (or refused/cancel) status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class StudyNotFound(PacsError):
    """The peer answered a STUDY-level C-FIND for one Study Instance UID with no match."""

    def __init__(self, message: str, *, study_instance_uid: str) -> None:
        super().__init__(message)
        self.study_instance_uid = study_instance_uid


class RetrieveIncomplete(PacsError):
    """A retrieval finished, but some sub-operations failed or expected instances never arrived."""

    def __init__(self, message: str, *, failed: int, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.failed = failed
        self.missing = missing


class AuthError(DrimboxError):
    """The caller is not allowed to do this."""


class Unauthenticated(AuthError):
    """No credentials, or credentials that do not verify (expired, wrong issuer, bad signature)."""


class Forbidden(AuthError):
    """Valid credentials that do not grant this access."""
