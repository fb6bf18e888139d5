"""Errors of KOS publication (outbox, pipeline, XDS.b client).

Every publication error is a :class:`~drimbox.errors.DrimboxError`. What matters to the outbox is
only which side of the tree an error is on: a *transient* error is retried with backoff, a
*permanent* one sends the job to the dead-letter list for an operator::

    DrimboxError
    └── PublishError
        ├── TransientPublishError      retried: registry or PACS unreachable, busy, study not there yet
        │   └── XdsTransportError      no HTTP answer, HTTP 5xx, malformed reply
        ├── PermanentPublishError      dead letter: never retried by itself
        │   ├── IdentityNotQualified   no qualified INS (PID-32 is not VALI): the INS may not be used
        │   ├── NotForDmp              the report is not to be sent to the DMP (DESTDMP=N, opposition)
        │   └── NothingToPublish       manual publication of an exam for which no report was received
        └── RegistryError              the registry answered Failure (RegistryError list kept);
                                       transient or permanent according to the error codes
"""

from __future__ import annotations

from dataclasses import dataclass

from drimbox.errors import DrimboxError

__all__ = [
    "IdentityNotQualified",
    "NotForDmp",
    "NothingToPublish",
    "PermanentPublishError",
    "PublishError",
    "RegistryError",
    "RegistryErrorDetail",
    "TransientPublishError",
    "XdsTransportError",
]


class PublishError(DrimboxError):
    """Publication failed; :attr:`permanent` tells the outbox whether to retry."""

    permanent: bool = False


class TransientPublishError(PublishError):
    """Worth retrying later (with backoff)."""


class XdsTransportError(TransientPublishError):
    """The XDS.b endpoint gave no usable answer (connection, timeout, HTTP 5xx, unparsable reply)."""


class PermanentPublishError(PublishError):
    """Retrying cannot help: the job goes to the dead-letter list for an operator."""

    permanent = True


class IdentityNotQualified(PermanentPublishError):
    """The patient identity is not qualified (PID-32 != VALI): the INS may not be used (DESIGN F1)."""


class NotForDmp(PermanentPublishError):
    """The report is not to be shared through the DMP (DESTDMP=N, patient opposition)."""


class NothingToPublish(PermanentPublishError):
    """A manual publication names an exam for which the node never received a report."""


@dataclass(frozen=True, slots=True)
class RegistryErrorDetail:
    """One ``rs:RegistryError`` of a ``RegistryResponse`` (ITI TF-3 4.2.4)."""

    code: str
    context: str = ""
    severity: str = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
    location: str = ""


# ITI TF-3 Table 4.2.4.1-2: the error codes that say "try again later"; every other code (metadata,
# patient id, duplicate uniqueId with another hash, policy refusals of the DMP, ...) is permanent.
TRANSIENT_CODES = frozenset(
    {
        "XDSRegistryBusy",
        "XDSRepositoryBusy",
        "XDSRegistryOutOfResources",
        "XDSRepositoryOutOfResources",
        "XDSRegistryNotAvailable",
        "XDSTimeout",
    }
)


class RegistryError(PublishError):
    """The registry or repository answered ``ResponseStatusType:Failure`` (or a SOAP fault)."""

    def __init__(self, message: str, errors: tuple[RegistryErrorDetail, ...] = (), *, transient: bool | None = None):
        super().__init__(message)
        self.errors = errors
        if transient is None:
            transient = bool(errors) and all(e.code in TRANSIENT_CODES for e in errors)
        self.permanent = not transient

    @property
    def codes(self) -> tuple[str, ...]:
        """The error codes, in the order the registry gave them."""
        return tuple(e.code for e in self.errors)
