"""What the authenticated caller may publish or change (DMP rules on top of the VIHF).

- The assertion's ``resource-id`` is the one patient the call may touch: a submission, update or
  FindDocuments about another patient is refused with ``XDSPatientIdDoesNotMatch``.
- Only an author may add a document or change one (replace, deprecate): in ``INDIRECTE`` mode the
  authenticated structure (``Identifiant_Structure``) must be the ``authorInstitution`` (XON.10) of
  one of the authors; in ``DIRECTE`` mode the professional (``NameID``) must be one of the
  ``authorPerson`` or the ``legalAuthenticator`` (XCN.1).
"""

from __future__ import annotations

from collections.abc import Collection

from registry.errors import ErrorCode, RegistryError
from registry.security.vihf import VihfPrincipal
from registry.xds.entries import ValidatedSubmission

__all__ = ["authorship_error", "patient_error", "submission_errors"]


def patient_error(principal: VihfPrincipal, patient_id: str, location: str) -> RegistryError | None:
    """An error unless the assertion was issued for ``patient_id``."""
    if principal.patient_id == patient_id:
        return None
    return RegistryError(
        ErrorCode.PATIENT_ID_DOES_NOT_MATCH,
        f"the VIHF assertion is for patient {principal.patient_id}, the request is about {patient_id}",
        location,
    )


def authorship_error(
    principal: VihfPrincipal, *, institutions: Collection[str], persons: Collection[str], location: str, what: str
) -> RegistryError | None:
    """An error unless the caller is an author of ``what`` (see the module docstring)."""
    if principal.authentication_mode == "INDIRECTE":
        if principal.structure_id in institutions:
            return None
        return RegistryError(
            ErrorCode.REGISTRY_METADATA_ERROR,
            f"VIHF Identifiant_Structure {principal.structure_id} is not the authorInstitution of any author of "
            f"{what} ({', '.join(sorted(institutions)) or 'none'})",
            location,
        )
    if principal.name_id in persons:
        return None
    return RegistryError(
        ErrorCode.REGISTRY_METADATA_ERROR,
        f"VIHF NameID {principal.name_id} is neither an authorPerson nor the legalAuthenticator of {what}",
        location,
    )


def submission_errors(submission: ValidatedSubmission, principal: VihfPrincipal) -> list[RegistryError]:
    """Patient and authorship checks of an ITI-41 submission."""
    errors: list[RegistryError] = []
    submission_set = submission.submission_set
    patient = patient_error(principal, submission_set.patient_id, submission_set.source.id)
    if patient:
        errors.append(patient)
    institutions = {i.id for i in submission_set.institutions}
    persons = {p.id for p in submission_set.authors}
    for document in submission.documents:
        institutions.update(i.id for i in document.institutions)
        persons.update(p.id for p in document.authors)
        if document.legal_authenticator:
            persons.add(document.legal_authenticator.id)
    authorship = authorship_error(
        principal,
        institutions=institutions,
        persons=persons,
        location=submission_set.source.id,
        what="the submission",
    )
    if authorship:
        errors.append(authorship)
    return errors
