"""ITI-43 Retrieve Document Set (ITI TF-2b §3.43): document bytes as MTOM parts.

Each ``DocumentRequest`` names this repository and a document uniqueId. A document of another
repository is ``XDSUnknownRepositoryId``; an unknown document, or one of another patient than the
VIHF assertion's, is ``XDSDocumentUniqueIdError`` (the two are indistinguishable on purpose). Some
found and some not: PartialSuccess. Deprecated documents stay retrievable.
"""

from __future__ import annotations

import uuid

from lxml import etree

from registry.context import RegistryContext
from registry.errors import ErrorCode, RegistryError, XdsFailure
from registry.security.vihf import VihfPrincipal
from registry.soap.xmlparse import text_of
from registry.store import crud
from registry.store.blobs import BlobNotFound
from registry.xds.ns import XDSB
from registry.xds.responses import retrieve_response

__all__ = ["ACTION", "RESPONSE_ACTION", "retrieve_documents"]

ACTION = "urn:ihe:iti:2007:RetrieveDocumentSet"
RESPONSE_ACTION = "urn:ihe:iti:2007:RetrieveDocumentSetResponse"


def retrieve_documents(
    ctx: RegistryContext, payload: etree._Element, principal: VihfPrincipal
) -> tuple[etree._Element, list[tuple[str, str, bytes]]]:
    """Answer one ``xdsb:RetrieveDocumentSetRequest``.

    Returns
    -------
    tuple
        The ``xdsb:RetrieveDocumentSetResponse`` and its attachments ``(content id, mime type, bytes)``.

    Raises
    ------
    XdsFailure
        The request itself is unusable (no DocumentRequest).
    """
    if payload.tag != f"{{{XDSB}}}RetrieveDocumentSetRequest":
        raise XdsFailure(
            [
                RegistryError(
                    ErrorCode.REPOSITORY_ERROR,
                    f"body element {etree.QName(payload).text} is not xdsb:RetrieveDocumentSetRequest",
                )
            ]
        )
    requests = payload.findall(f"{{{XDSB}}}DocumentRequest")
    if not requests:
        raise XdsFailure([RegistryError(ErrorCode.REPOSITORY_ERROR, "no xdsb:DocumentRequest in the request")])
    found: list[tuple[str, str, str, str, str]] = []
    attachments: list[tuple[str, str, bytes]] = []
    errors: list[RegistryError] = []
    repository = ctx.settings.repository_unique_id
    with ctx.database.session() as session:
        for request in requests:
            repository_id = text_of(request.find(f"{{{XDSB}}}RepositoryUniqueId"))
            unique_id = text_of(request.find(f"{{{XDSB}}}DocumentUniqueId"))
            home = text_of(request.find(f"{{{XDSB}}}HomeCommunityId"))
            if repository_id != repository:
                errors.append(
                    RegistryError(
                        ErrorCode.UNKNOWN_REPOSITORY_ID,
                        f"repository {repository_id!r} is not this one ({repository})",
                        unique_id,
                    )
                )
                continue
            row = crud.document_by_unique_id(session, unique_id=unique_id) if unique_id else None
            if row is None or row.patient_id != principal.patient_id:
                errors.append(
                    RegistryError(
                        ErrorCode.DOCUMENT_UNIQUE_ID_ERROR,
                        f"no document {unique_id!r} in this repository for this patient",
                        unique_id,
                    )
                )
                continue
            try:
                data = ctx.blobs.get(row.blob_sha256)
            except BlobNotFound:
                errors.append(
                    RegistryError(
                        ErrorCode.REPOSITORY_ERROR,
                        f"the bytes of document {unique_id} are missing from the store",
                        unique_id,
                    )
                )
                continue
            content_id = f"{uuid.uuid4().hex}@registry"
            found.append((home or ctx.settings.home_community_id, repository, unique_id, row.mime_type, content_id))
            attachments.append((content_id, row.mime_type, data))
    return retrieve_response(found, errors), attachments
