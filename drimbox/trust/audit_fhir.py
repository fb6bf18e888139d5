"""FHIR R4 AuditEvent view of the audit trail, for export (an access report to a patient).

The stored body stays the node's own JSON (:mod:`drimbox.trust.audit`): the hashes cover it, and a
change of this mapping must never invalidate old records. The mapping follows FHIR R4 AuditEvent with
the DICOM (DCM) audit event codes (PS3.15 A.5, the codes IHE ATNA and the DICOM→FHIR mapping use):

- ``type``: DCM 110112 Query (``*find*``, ``qido``, ``*query*``), 110107 Import, 110106 Export (exports
  and publications), 110104 DICOM Instances Transferred (served or moved instances, retrievals),
  110114 User Authentication (logins), else 110110 Patient Record (contextual call, portal pages) —
  ``subtype`` keeps the node's own action name (system :data:`ACTION_SYSTEM`);
- ``agent``: the user as requestor (``who.identifier`` = IdNatPS ``8`` + RPPS under OID
  ``1.2.250.1.71.4.2.1``, the token subject as ``altId``, the role as ``role.text``, the client
  address as ``network``) and the peer node that presented the request (requestor when no user acted);
- ``source``: this node; ``entity``: the patient (INS), the study, the series, the KOS manifest and the
  instances; ``outcome`` 0 / 4 (refused) / 8 (failure) with ``outcomeDesc``; ``period`` = the instant;
  emergency access ("bris de glace") flagged by ``purposeOfEvent`` v3-ActReason ``ETREAT``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from drimbox.trust.audit import AuditEvent, AuditRecord

__all__ = ["ACTION_SYSTEM", "fhir_audit_event", "fhir_bundle", "patient_records"]

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACTION_SYSTEM = "urn:drimbox:audit-action"
"""Code system of ``AuditEvent.subtype``: the node's own action names (``wado.instance-served`` …)."""
INS_NIR_OID = "1.2.250.1.213.1.4.8"
IDNATPS_OID = "1.2.250.1.71.4.2.1"

_OUTCOME = {"success": "0", "refused": "4", "failure": "8"}


def _type_of(action: str) -> tuple[str, str, str]:
    """(DCM code, display, FHIR action code C/R/U/D/E) of a node action name."""
    name = action.lower()
    if "login" in name or "auth" in name:
        return "110114", "User Authentication", "E"
    if "find" in name or "qido" in name or "query" in name:
        return "110112", "Query", "E"
    if "import" in name:
        return "110107", "Import", "C"
    if "export" in name or "publish" in name:
        return "110106", "Export", "R"
    if any(word in name for word in ("served", "retrieve", "move", "get", "fetch", "wado", "store")):
        return "110104", "DICOM Instances Transferred", "R"
    return "110110", "Patient Record", "R"


def _uid(uid: str) -> dict[str, str]:
    return {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}


def _entity(identifier: dict[str, str], type_code: str, role_code: str, description: str) -> dict[str, Any]:
    return {
        "what": {"identifier": identifier},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": type_code},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": role_code},
        "description": description,
    }


def fhir_audit_event(event: AuditEvent, *, node: str = "", seq: int | None = None,
                     record_hash: str | None = None) -> dict[str, Any]:
    """The FHIR R4 ``AuditEvent`` resource of one event (``seq``/``record_hash`` tie it to the chain)."""
    code, display, fhir_action = _type_of(event.action)
    instant = (event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": code, "display": display},
        "subtype": [{"system": ACTION_SYSTEM, "code": event.action}],
        "action": fhir_action,
        "period": {"start": instant, "end": instant},
        "recorded": instant,
        "outcome": _OUTCOME.get(event.outcome, "8"),
    }
    if seq is not None:
        resource["id"] = f"{node or 'node'}-audit-{seq}"
    if record_hash is not None:
        resource["meta"] = {"tag": [{"system": "urn:drimbox:audit-chain", "code": record_hash,
                                     "display": f"seq {seq}"}]}
    if event.detail:
        resource["outcomeDesc"] = event.detail
    if event.emergency:
        resource["purposeOfEvent"] = [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT",
            "display": "Emergency Treatment"}]}]
    agents: list[dict[str, Any]] = []
    if event.rpps or event.subject:
        user: dict[str, Any] = {
            "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
            "requestor": True,
            "who": {"identifier": {"system": f"urn:oid:{IDNATPS_OID}", "value": f"8{event.rpps}"}} if event.rpps
            else {"display": event.subject},
        }
        if event.subject:
            user["altId"] = event.subject
        if event.role:
            user["role"] = [{"text": event.role}]
        if event.source:
            user["network"] = {"address": event.source, "type": "2"}
        agents.append(user)
    if event.node:
        peer: dict[str, Any] = {
            "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
            "who": {"identifier": {"system": "urn:drimbox:node", "value": event.node}},
            "requestor": not agents,
        }
        if event.source and not agents:
            peer["network"] = {"address": event.source, "type": "2"}
        agents.append(peer)
    if not agents:  # FHIR requires one agent: the client, known only by its address
        agents.append({"requestor": True, "who": {"display": event.source or "unknown"},
                       **({"network": {"address": event.source, "type": "2"}} if event.source else {})})
    resource["agent"] = agents
    resource["source"] = {
        "site": node or None,
        "observer": {"display": node or "drimbox node"},
        "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                  "display": "Application Server"}],
    }
    if not node:
        del resource["source"]["site"]
    entities: list[dict[str, Any]] = []
    if event.patient_ins:
        entities.append(_entity({"system": f"urn:oid:{INS_NIR_OID}", "value": event.patient_ins}, "1", "1",
                                "patient (INS)"))
    if event.study_uid:
        entities.append(_entity(_uid(event.study_uid), "2", "3", "study"))
    if event.series_uid:
        entities.append(_entity(_uid(event.series_uid), "2", "3", "series"))
    if event.kos_uid:
        entities.append(_entity(_uid(event.kos_uid), "2", "20", "KOS manifest"))
    entities.extend(_entity(_uid(uid), "2", "3", "instance") for uid in event.sop_instance_uids)
    if entities:
        resource["entity"] = entities
    return resource


def patient_records(records: Iterable[AuditRecord], ins: str) -> list[AuditRecord]:
    """The records about one patient: those naming the INS, and those naming none but one of the studies or
    manifests of the events that do (the network face audits served instances by KOS and study)."""
    rows = list(records)
    studies: set[str] = set()
    manifests: set[str] = set()
    events = {r.seq: r.event() for r in rows}
    for event in events.values():
        if event.patient_ins == ins:
            if event.study_uid:
                studies.add(event.study_uid)
            if event.kos_uid:
                manifests.add(event.kos_uid)
    chosen: list[AuditRecord] = []
    for record in rows:
        event = events[record.seq]
        if event.patient_ins == ins or (event.patient_ins is None
                                        and (event.study_uid in studies or event.kos_uid in manifests)):
            chosen.append(record)
    return chosen


def fhir_bundle(records: Iterable[AuditRecord], *, node: str = "") -> dict[str, Any]:
    """A FHIR ``Bundle`` (type ``collection``, so no ``total``: bdl-1) of the records' AuditEvents, in trail order."""
    entries = [{"fullUrl": f"urn:drimbox:audit:{node or 'node'}:{r.seq}",
                "resource": fhir_audit_event(r.event(), node=node, seq=r.seq, record_hash=r.hash)} for r in records]
    return {"resourceType": "Bundle", "type": "collection", "timestamp": datetime.now(UTC).isoformat(),
            "entry": entries}
