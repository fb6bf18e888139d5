"""ITI-41 Provide and Register Document Set-b (ITI TF-2b §3.41), as the integrated Repository+Registry.

Reading order: the request structure, the document bytes (MTOM parts or inline base64), the metadata
rules (:mod:`registry.xds.validation`), the caller's rights (:mod:`registry.xds.authorization`), the
DSG signature (:mod:`registry.security.dsg`), then registration (:mod:`registry.xds.register`).
All failures are gathered into one ``RegistryResponse`` with status Failure.
"""

from __future__ import annotations

import logging

from lxml import etree

from registry.context import RegistryContext
from registry.errors import ErrorCode, RegistryError, XdsFailure
from registry.security.dsg import verify_dsg
from registry.security.vihf import VihfPrincipal
from registry.security.xmldsig import InvalidSignatureError
from registry.soap.envelope import SoapRequest
from registry.xds.authorization import submission_errors
from registry.xds.ebrim import read_objects
from registry.xds.entries import ValidatedSubmission
from registry.xds.ns import LCM, RIM, XDSB
from registry.xds.register import register_submission
from registry.xds.responses import registry_response
from registry.xds.validation import validate_submission

__all__ = ["ACTION", "RESPONSE_ACTION", "provide_and_register"]

ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
RESPONSE_ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"

log = logging.getLogger("registry.iti41")


def _metadata_error(context: str, location: str = "") -> XdsFailure:
    return XdsFailure([RegistryError(ErrorCode.REGISTRY_METADATA_ERROR, context, location)])


def _documents(request: SoapRequest) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for document in request.payload.findall(f"{{{XDSB}}}Document"):
        document_id = (document.get("id") or "").strip()
        if not document_id:
            raise _metadata_error("an xdsb:Document has no id attribute", "Document")
        if document_id in contents:
            raise XdsFailure(
                [
                    RegistryError(
                        ErrorCode.REPOSITORY_METADATA_ERROR,
                        f"xdsb:Document id {document_id!r} appears twice",
                        document_id,
                    )
                ]
            )
        contents[document_id] = request.binary(document)
    return contents


def _dsg_errors(ctx: RegistryContext, submission: ValidatedSubmission) -> list[RegistryError]:
    signature = submission.signature
    if signature is None:  # validation already reported it
        return []
    others = {d.unique_id: d.content for d in submission.documents if not d.is_signature}
    try:
        verify_dsg(
            signature.content,
            documents=others,
            submission_set_unique_id=submission.submission_set.unique_id,
            trust=ctx.trust,
            now=ctx.clock(),
        )
    except InvalidSignatureError as exc:
        return [
            RegistryError(ErrorCode.REGISTRY_METADATA_ERROR, f"DSG signature document: {exc}", signature.symbolic_id)
        ]
    return []


def provide_and_register(ctx: RegistryContext, request: SoapRequest, principal: VihfPrincipal) -> etree._Element:
    """Handle one ITI-41 request; return its ``rs:RegistryResponse``.

    Raises
    ------
    XdsFailure
        The submission is refused; nothing was stored.
    """
    payload = request.payload
    if payload.tag != f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest":
        raise _metadata_error(
            f"body element {etree.QName(payload).text} is not xdsb:ProvideAndRegisterDocumentSetRequest"
        )
    object_list = payload.find(f"{{{LCM}}}SubmitObjectsRequest/{{{RIM}}}RegistryObjectList")
    if object_list is None:
        raise _metadata_error("lcm:SubmitObjectsRequest/rim:RegistryObjectList is missing")
    result = validate_submission(read_objects(object_list), _documents(request), ctx.validation)
    if isinstance(result, list):
        raise XdsFailure(result)
    errors = submission_errors(result, principal) + _dsg_errors(ctx, result)
    if errors:
        raise XdsFailure(errors)
    outcome = register_submission(ctx, result, principal)
    log.info(
        "ITI-41 %s: submission set %s, %d document(s) for %s by %s",
        "replay, nothing written" if outcome.replay else "registered",
        result.submission_set.unique_id,
        len(result.documents),
        result.submission_set.patient_id,
        principal.name_id,
    )
    return registry_response()
