"""The registry's exception tree, mapped to the wire in one place per face (``registry.app``).

::

    RegistryServiceError
    ├── SoapFault ............ SOAP 1.2 Fault (env:Sender → HTTP 400/413/415, env:Receiver → 500)
    │   └── SecurityFault .... WS-Security subcodes: VIHF missing, malformed, untrusted or expired
    ├── XdsFailure ........... an XDS response with status Failure and its RegistryErrorList (HTTP 200)
    └── Unauthenticated ...... FHIR face: 401 + OperationOutcome, ``WWW-Authenticate: Bearer``

:class:`RegistryError` is one ``rs:RegistryError`` (ITI TF-3 §4.2.4): the code, the exact problem
(``codeContext``) and where it was found (``location``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ErrorCode",
    "RegistryError",
    "RegistryServiceError",
    "SecurityFault",
    "SoapFault",
    "Unauthenticated",
    "XdsFailure",
]


class ErrorCode(StrEnum):
    """``errorCode`` values (ITI TF-3 Table 4.2.4.1-2, ITI TF-2b §3.57.4.1.3.5, ebRS 3.0)."""

    REGISTRY_METADATA_ERROR = "XDSRegistryMetadataError"
    REPOSITORY_METADATA_ERROR = "XDSRepositoryMetadataError"
    REGISTRY_ERROR = "XDSRegistryError"
    REPOSITORY_ERROR = "XDSRepositoryError"
    MISSING_DOCUMENT = "XDSMissingDocument"
    MISSING_DOCUMENT_METADATA = "XDSMissingDocumentMetadata"
    PATIENT_ID_DOES_NOT_MATCH = "XDSPatientIdDoesNotMatch"
    UNKNOWN_PATIENT_ID = "XDSUnknownPatientId"
    NON_IDENTICAL_HASH = "XDSNonIdenticalHash"
    NON_IDENTICAL_SIZE = "XDSNonIdenticalSize"
    DUPLICATE_UNIQUE_ID_IN_MESSAGE = "XDSRegistryDuplicateUniqueIdInMessage"
    DUPLICATE_UNIQUE_ID_IN_REGISTRY = "XDSDuplicateUniqueIdInRegistry"
    DEPRECATED_DOCUMENT = "XDSRegistryDeprecatedDocumentError"
    UNRESOLVED_REFERENCE = "UnresolvedReferenceException"
    UNKNOWN_STORED_QUERY = "XDSUnknownStoredQuery"
    STORED_QUERY_MISSING_PARAM = "XDSStoredQueryMissingParam"
    STORED_QUERY_PARAM_NUMBER = "XDSStoredQueryParamNumber"
    TOO_MANY_RESULTS = "XDSTooManyResults"
    UNKNOWN_REPOSITORY_ID = "XDSUnknownRepositoryId"
    DOCUMENT_UNIQUE_ID_ERROR = "XDSDocumentUniqueIdError"
    METADATA_UPDATE_ERROR = "XDSMetadataUpdateError"
    METADATA_UPDATE_OPERATION_ERROR = "XDSMetadataUpdateOperationError"


@dataclass(frozen=True, slots=True)
class RegistryError:
    """One ``rs:RegistryError``: always severity Error here (warnings are not used)."""

    code: ErrorCode
    context: str
    location: str = ""


class RegistryServiceError(Exception):
    """Root of every error the registry maps to a response."""


class SoapFault(RegistryServiceError):
    """A SOAP 1.2 fault (SOAP 1.2 Part 1 §5.4).

    Parameters
    ----------
    code
        ``Sender`` (the request is at fault), ``Receiver`` (the registry is), ``VersionMismatch``
        or ``MustUnderstand``.
    reason
        Human-readable ``env:Text``: names the exact problem.
    subcode
        Qualified name of the ``env:Subcode`` (``wsa:ActionNotSupported``, ``wsse:FailedAuthentication``…).
    http_status
        Status of the HTTP response: 500 for ``Receiver`` only, 400 otherwise; 413/415 for size and
        media type.
    """

    def __init__(self, code: str, reason: str, *, subcode: str | None = None, http_status: int | None = None):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.subcode = subcode
        # SOAP 1.2 Part 2 §7.5.2.2 maps VersionMismatch and MustUnderstand to 500 too; they are the
        # client's doing, and a client error must never look like a server crash here: 400.
        self.http_status = http_status if http_status is not None else (500 if code == "Receiver" else 400)


class SecurityFault(SoapFault):
    """The WS-Security header or its VIHF assertion is missing, malformed, untrusted or expired.

    The X-Service Provider answers with a SOAP fault carrying a WS-Security 1.1 fault code
    (ITI TF-2b §3.40.4.2, WSS 1.1 §12).
    """

    def __init__(self, reason: str, *, subcode: str = "wsse:InvalidSecurityToken") -> None:
        super().__init__("Sender", reason, subcode=subcode)


class XdsFailure(RegistryServiceError):
    """The request is understood but refused: answered with status Failure and these errors."""

    def __init__(self, errors: list[RegistryError]) -> None:
        super().__init__("; ".join(f"{e.code}: {e.context}" for e in errors))
        self.errors = errors


class Unauthenticated(RegistryServiceError):
    """No valid bearer token on a FHIR request."""
