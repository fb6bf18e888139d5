"""FHIR R4 resources of the MHD view, as plain JSON dicts (ITI TF-3 §4.5 XDS ↔ FHIR mapping).

A DocumentEntry becomes a ``DocumentReference``: ``masterIdentifier`` = ``urn:oid:<uniqueId>``,
``identifier`` = the entryUUID, ``status`` current/superseded for Approved/Deprecated, ``type`` and
``category`` = typeCode and classCode, ``subject`` = the INS as a logical reference,
``securityLabel`` = confidentialityCode, ``content`` = the attachment (mimeType, size, SHA-1,
creationTime, ``url`` → ITI-68) and formatCode, ``context`` = eventCodeList, service period,
facility and practice setting, and ``referenceIdList`` as ``related`` identifiers.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from registry.soap.xmlparse import parse_xml
from registry.store import crud
from registry.store.models import DocumentEntryRow
from registry.xds import ns
from registry.xds.ebrim import RegistryObject, read_extrinsic
from registry.xds.hl7 import OID

__all__ = ["bundle", "document_reference", "fhir_instant", "operation_outcome", "patient_id_from_token"]

MHD_PROFILE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Minimal.DocumentReference"
_STATUS = {"Approved": "current", "Deprecated": "superseded"}


def fhir_instant(dtm: str | None) -> str | None:
    """``YYYYMMDDhhmmss`` (UTC) → FHIR ``instant``/``dateTime``."""
    if not dtm:
        return None
    return f"{dtm[0:4]}-{dtm[4:6]}-{dtm[6:8]}T{dtm[8:10]}:{dtm[10:12]}:{dtm[12:14]}Z"


def _system(scheme: str) -> str:
    return f"urn:oid:{scheme}" if OID.match(scheme) else scheme


def _concept(entry: RegistryObject, scheme: str) -> list[dict[str, Any]]:
    concepts = []
    for classification in entry.classified_by(scheme):
        schemes = classification.slots.get("codingScheme", [""])
        coding = {"system": _system(schemes[0] if schemes else ""), "code": classification.code}
        if classification.name:
            coding["display"] = classification.name
        concepts.append({"coding": [coding]})
    return concepts


def _utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _first(concepts: list[dict[str, Any]]) -> dict[str, Any] | None:
    return concepts[0] if concepts else None


def patient_id_from_token(token: str) -> str | None:
    """``urn:oid:<INS OID>|<INS>`` → the XDS patient id, ``None`` if not of that form."""
    system, bar, value = token.partition("|")
    if not bar or not system.startswith("urn:oid:") or not value:
        return None
    return f"{value}^^^&{system[len('urn:oid:') :]}&ISO^NH"


def document_reference(row: DocumentEntryRow, base_url: str) -> dict[str, Any]:
    """The ``DocumentReference`` of one entry; ``base_url`` is the FHIR base (``…/fhir``)."""
    entry = read_extrinsic(parse_xml(crud.decompress(row.ebrim)))
    resource_id = row.entry_uuid.removeprefix("urn:uuid:")
    ins, _, rest = row.patient_id.partition("^^^&")
    ins_oid = rest.split("&", 1)[0]
    attachment: dict[str, Any] = {
        "contentType": row.mime_type,
        "language": row.language_code,
        "url": f"{base_url}/Binary/{resource_id}",
        "size": row.size,
        "hash": base64.b64encode(bytes.fromhex(row.hash_sha1)).decode(),
        "title": row.title,
        "creation": fhir_instant(row.creation_time),
    }
    context: dict[str, Any] = {
        "event": _concept(entry, ns.DE_EVENT_CODE),
        "facilityType": _first(_concept(entry, ns.DE_HEALTHCARE_FACILITY_TYPE_CODE)),
        "practiceSetting": _first(_concept(entry, ns.DE_PRACTICE_SETTING_CODE)),
        "related": [
            {
                "identifier": {
                    "type": {"text": r.id_type},
                    **({"system": f"urn:oid:{r.authority}"} if r.authority else {}),
                    "value": r.id_value,
                }
            }
            for r in row.reference_ids
        ],
    }
    period = {
        k: v
        for k, v in (("start", fhir_instant(row.service_start_time)), ("end", fhir_instant(row.service_stop_time)))
        if v
    }
    if period:
        context["period"] = period
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": resource_id,
        "meta": {"profile": [MHD_PROFILE]},
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{row.unique_id}"},
        "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986", "value": row.entry_uuid}],
        "status": _STATUS.get(row.status, "entered-in-error"),
        "type": (_concept(entry, ns.DE_TYPE_CODE) or [{}])[0],
        "category": _concept(entry, ns.DE_CLASS_CODE),
        "subject": {"identifier": {"system": f"urn:oid:{ins_oid}", "value": ins}},
        "date": _utc(row.registered_at).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "securityLabel": _concept(entry, ns.DE_CONFIDENTIALITY_CODE),
        "content": [{"attachment": attachment, "format": _concept(entry, ns.DE_FORMAT_CODE)[0]["coding"][0]}],
        "context": {k: v for k, v in context.items() if v},
    }
    return resource


def bundle(
    resources: list[dict[str, Any]], total: int, self_url: str, next_url: str | None, base_url: str
) -> dict[str, Any]:
    """A ``searchset`` Bundle (ITI-67 response)."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {"fullUrl": f"{base_url}/DocumentReference/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


def operation_outcome(code: str, diagnostics: str) -> dict[str, Any]:
    """An ``OperationOutcome`` with one error issue (FHIR R4 issue-type ``code``)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }
