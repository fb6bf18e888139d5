"""The node's XDS.b client: ITI-41, ITI-18, ITI-43, ITI-57 over SOAP 1.2 (MTOM where required).

Works against this project's registry service and is written to the DMP's profile of the same
transactions; interoperability with the live DMP cannot be tested here (it needs an ANS test
account, an IGC-Santé organisation certificate and the DMP's test platform), so none is claimed.

ITI-41 and ITI-43 go as MTOM/XOP (required by ITI TF-2 3.41.5 / 3.43.5); ITI-18 and ITI-57 as plain
SOAP 1.2 (``application/soap+xml``), which every XDS.b registry accepts for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from lxml import etree

from drimbox.publish.errors import RegistryError, RegistryErrorDetail, XdsTransportError
from drimbox.publish.xds.mtom import Attachment, encode_mtom, parse_soap_response, resolve_include
from drimbox.publish.xds.requests import (
    DocumentPart,
    FindDocumentsQuery,
    find_documents_request,
    get_documents_request,
    provide_and_register_request,
    retrieve_request,
    update_status_request,
)
from drimbox.publish.xds.rim import RegistryDocument, SubmissionSet, parse_extrinsic_object
from drimbox.publish.xds.soap import body_child, build_envelope, check_fault, require_success
from drimbox.publish.xds.vocabulary import ACTION, NS

__all__ = ["RetrievedDocument", "XdsClient", "XdsEndpoints", "iti41_envelope"]

_RIM = f"{{{NS['rim']}}}"
_RS = f"{{{NS['rs']}}}"
_XDSB = f"{{{NS['xdsb']}}}"


@dataclass(frozen=True, slots=True)
class XdsEndpoints:
    """Where the Document Registry (ITI-18, ITI-57) and Repository (ITI-41, ITI-43) answer."""

    registry: str
    repository: str


@dataclass(frozen=True, slots=True)
class RetrievedDocument:
    """One document of an ITI-43 answer."""

    repository_unique_id: str
    document_unique_id: str
    mime_type: str
    content: bytes


def iti41_envelope(url: str, metadata: etree._Element, documents: Sequence[DocumentPart], *,
                   assertion: etree._Element | None) -> tuple[etree._Element, list[Attachment]]:
    """The ITI-41 SOAP envelope (documents as ``xop:Include``) and the MTOM parts it references."""
    body, attachments = provide_and_register_request(metadata, documents)
    return build_envelope(ACTION.ITI41, url, body, assertion=assertion), attachments


def _serialise(envelope: etree._Element) -> bytes:
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


class XdsClient:
    """XDS.b transactions over one ``httpx.Client`` (TLS, timeouts and transport are the caller's).

    Every method takes the WS-Security assertion to send (``None`` for a registry without one).

    Raises
    ------
    XdsTransportError
        No usable answer (connection, timeout, HTTP error without SOAP, malformed reply): transient.
    RegistryError
        The service answered Failure or a SOAP fault; ``permanent`` says whether to retry.
    """

    def __init__(self, endpoints: XdsEndpoints, http: httpx.Client) -> None:
        self.endpoints = endpoints
        self._http = http

    def _post(self, url: str, content_type: str, body: bytes, what: str) -> tuple[etree._Element, dict[str, bytes]]:
        try:
            response = self._http.post(url, content=body, headers={"Content-Type": content_type})
        except httpx.HTTPError as exc:
            raise XdsTransportError(f"{what}: {url}: {type(exc).__name__}: {exc}") from exc
        reply_type = response.headers.get("content-type", "")
        try:
            envelope, parts = parse_soap_response(reply_type, response.content)
        except XdsTransportError as exc:
            if response.is_success:
                raise XdsTransportError(f"{what}: {exc}") from exc
            # No SOAP answer: server errors and throttling are transient; a refused request is not.
            transient = response.status_code >= 500 or response.status_code in (408, 429)
            raise RegistryError(f"{what}: HTTP {response.status_code} from {url}",
                                (RegistryErrorDetail(f"HTTP{response.status_code}", response.text[:200]),),
                                transient=transient) from exc
        check_fault(envelope)
        return envelope, parts

    def _soap(self, url: str, action: str, body: etree._Element, assertion: etree._Element | None,
              what: str) -> tuple[etree._Element, dict[str, bytes]]:
        envelope = build_envelope(action, url, body, assertion=assertion)
        return self._post(url, f'application/soap+xml; charset=UTF-8; action="{action}"', _serialise(envelope), what)

    # -- ITI-41 -----------------------------------------------------------------------------------

    def provide_and_register(self, metadata: etree._Element, documents: Sequence[DocumentPart], *,
                             assertion: etree._Element | None) -> tuple[RegistryErrorDetail, ...]:
        """ITI-41 Provide and Register Document Set-b; returns the warnings of a success."""
        url = self.endpoints.repository
        envelope, attachments = iti41_envelope(url, metadata, documents, assertion=assertion)
        message = encode_mtom(_serialise(envelope), attachments, ACTION.ITI41)
        reply, _ = self._post(url, message.content_type, message.body, "ITI-41")
        return require_success(body_child(reply), "ITI-41")

    # -- ITI-18 -----------------------------------------------------------------------------------

    def _stored_query(self, request: etree._Element, assertion: etree._Element | None) -> list[RegistryDocument]:
        reply, _ = self._soap(self.endpoints.registry, ACTION.ITI18, request, assertion, "ITI-18")
        response = body_child(reply)
        require_success(response, "ITI-18")
        objects = response.iterfind(f"{_RIM}RegistryObjectList/{_RIM}ExtrinsicObject")
        return [parse_extrinsic_object(eo) for eo in objects]

    def find_documents(self, query: FindDocumentsQuery, *,
                       assertion: etree._Element | None) -> list[RegistryDocument]:
        """ITI-18 FindDocuments (LeafClass)."""
        return self._stored_query(find_documents_request(query), assertion)

    def get_documents(self, *, unique_ids: Sequence[str] = (), entry_uuids: Sequence[str] = (),
                      assertion: etree._Element | None) -> list[RegistryDocument]:
        """ITI-18 GetDocuments (LeafClass), whatever their status."""
        return self._stored_query(get_documents_request(unique_ids=unique_ids, entry_uuids=entry_uuids), assertion)

    # -- ITI-43 -----------------------------------------------------------------------------------

    def retrieve(self, items: Sequence[tuple[str, str]], *,
                 assertion: etree._Element | None) -> list[RetrievedDocument]:
        """ITI-43 Retrieve Document Set for (repositoryUniqueId, documentUniqueId) pairs."""
        url = self.endpoints.repository
        envelope = build_envelope(ACTION.ITI43, url, retrieve_request(items), assertion=assertion)
        message = encode_mtom(_serialise(envelope), [], ACTION.ITI43)
        reply, parts = self._post(url, message.content_type, message.body, "ITI-43")
        response = body_child(reply)
        registry_response = response.find(_RS + "RegistryResponse")
        require_success(registry_response if registry_response is not None else response, "ITI-43")
        documents = []
        for item in response.iterfind(_XDSB + "DocumentResponse"):
            content = item.find(_XDSB + "Document")
            if content is None:
                raise XdsTransportError("ITI-43: DocumentResponse without a Document")
            documents.append(RetrievedDocument(
                repository_unique_id=item.findtext(_XDSB + "RepositoryUniqueId", ""),
                document_unique_id=item.findtext(_XDSB + "DocumentUniqueId", ""),
                mime_type=item.findtext(_XDSB + "mimeType", ""),
                content=resolve_include(content, parts),
            ))
        return documents

    # -- ITI-57 -----------------------------------------------------------------------------------

    def update_status(self, submission_set: SubmissionSet, entry_uuids: Sequence[str], *,
                      assertion: etree._Element | None) -> tuple[RegistryErrorDetail, ...]:
        """ITI-57: deprecate approved document entries (``UpdateAvailabilityStatus``)."""
        request = update_status_request(submission_set, entry_uuids)
        reply, _ = self._soap(self.endpoints.registry, ACTION.ITI57, request, assertion, "ITI-57")
        return require_success(body_child(reply), "ITI-57")
