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
    ├── InvalidRequest              a request the node refuses as malformed (HTTP 400; ``problems`` lists why)
    ├── NetworkError                consumer side: the registry or a source node (F6, F7)
    │   ├── RegistryUnavailable     the registry cannot be reached or answered garbage (HTTP 503)
    │   ├── RegistryRefused         the registry answered a failure (HTTP 502)
    │   ├── UntrustedPeer           a RetrieveURL points to a host not on the trust list (HTTP 502)
    │   ├── TrustListRejected       a fetched trust list fails verification (named ``reason``; old list kept)
    │   ├── SourceUnavailable       a source node cannot be reached / timed out (HTTP 503)
    │   └── SourceRefused           a source node refused the request (4xx; status kept; HTTP 502)
    ├── ImportFailed                the local PACS did not take (or did not commit) an import (HTTP 502)
    └── AuthError                   the request is not authenticated or not authorised
        ├── Unauthenticated         no, invalid or expired credentials (HTTP 401)
        ├── LoginRequired           a browser page without a session: redirect to login (HTTP 303)
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
    "ImportFailed",
    "InvalidQuery",
    "InvalidRequest",
    "LoginRequired",
    "NetworkError",
    "RegistryRefused",
    "RegistryUnavailable",
    "SourceRefused",
    "SourceUnavailable",
    "UntrustedPeer",
    "TrustListRejected",
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


class LoginRequired(Unauthenticated):
    """A browser page was asked without a session: the user must log in, then come back to ``next_url``."""

    def __init__(self, message: str, *, next_url: str) -> None:
        super().__init__(message)
        self.next_url = next_url


class InvalidRequest(DrimboxError, ValueError):
    """A request the node refuses as malformed; ``problems`` lists every reason (shown to the user)."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class NetworkError(DrimboxError):
    """The consumer side could not get what it needs from the registry or a source node."""


class RegistryUnavailable(NetworkError):
    """The registry cannot be reached, timed out, or answered something that is not XDS."""


class RegistryRefused(NetworkError):
    """The registry answered a failure to a query or retrieve."""


class UntrustedPeer(NetworkError):
    """A URL points to a host that is not on the trust list: it is not followed."""

    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.host = host


class TrustListRejected(NetworkError):
    """A trust list (F11) failed verification; ``reason`` names the check that failed (``unsigned``,
    ``signature-invalid``, ``untrusted-chain``, …) so that alerts and tests can tell the cases apart."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"trust list rejected: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail


class SourceUnavailable(NetworkError):
    """A source node cannot be reached or timed out (worth retrying later)."""


class SourceRefused(NetworkError):
    """A source node refused a request (HTTP 4xx); ``status`` is its HTTP status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ImportFailed(DrimboxError):
    """The local PACS refused instances of an import, or did not confirm them by Storage Commitment."""

    def __init__(self, message: str, *, failed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.failed = failed
