"""Namespaces and fixed identifiers of XDS.b metadata (IHE ITI TF-3 §4.2, ebRIM 3.0).

The UUIDs name classification schemes, external identifier schemes, object types and association
types; they are constants of the profile, listed in ITI TF-3 Table 4.2.5-1 / §4.2.3.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ASSOC_HAS_MEMBER",
    "ASSOC_RPLC",
    "ASSOC_SIGNS",
    "ASSOC_UPDATE_AVAILABILITY",
    "CLS_SUBMISSION_SET",
    "DE_AUTHOR",
    "DE_CLASS_CODE",
    "DE_CONFIDENTIALITY_CODE",
    "DE_EVENT_CODE",
    "DE_FORMAT_CODE",
    "DE_HEALTHCARE_FACILITY_TYPE_CODE",
    "DE_PATIENT_ID",
    "DE_PRACTICE_SETTING_CODE",
    "DE_TYPE_CODE",
    "DE_UNIQUE_ID",
    "LCM",
    "NSMAP",
    "OBJECT_REF",
    "QUERY",
    "RIM",
    "RS",
    "SEVERITY_ERROR",
    "SLOT_REFERENCE_ID_LIST",
    "SOAP_ENV",
    "SS_AUTHOR",
    "SS_CONTENT_TYPE_CODE",
    "SS_PATIENT_ID",
    "SS_SOURCE_ID",
    "SS_UNIQUE_ID",
    "STABLE_DOCUMENT_ENTRY",
    "STATUS_APPROVED",
    "STATUS_DEPRECATED",
    "STATUS_FAILURE",
    "STATUS_PARTIAL_SUCCESS",
    "STATUS_SUBMITTED",
    "STATUS_SUCCESS",
    "WSA",
    "WSSE",
    "XDSB",
    "XOP",
]

SOAP_ENV: Final = "http://www.w3.org/2003/05/soap-envelope"
WSA: Final = "http://www.w3.org/2005/08/addressing"
WSSE: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
XOP: Final = "http://www.w3.org/2004/08/xop/include"
RIM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
LCM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
QUERY: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDSB: Final = "urn:ihe:iti:xds-b:2007"

NSMAP: Final[dict[str, str]] = {
    "soap": SOAP_ENV,
    "wsa": WSA,
    "wsse": WSSE,
    "xop": XOP,
    "rim": RIM,
    "rs": RS,
    "lcm": LCM,
    "query": QUERY,
    "xdsb": XDSB,
}

# Object types and classification nodes (ITI TF-3 §4.2.5)
STABLE_DOCUMENT_ENTRY: Final = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
CLS_SUBMISSION_SET: Final = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"

# DocumentEntry classification and identification schemes (ITI TF-3 §4.2.3.2)
DE_AUTHOR: Final = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS_CODE: Final = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY_CODE: Final = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT_CODE: Final = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT_CODE: Final = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_HEALTHCARE_FACILITY_TYPE_CODE: Final = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_SETTING_CODE: Final = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE_CODE: Final = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID: Final = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID: Final = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"

# SubmissionSet classification and identification schemes (ITI TF-3 §4.2.3.3)
SS_AUTHOR: Final = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE_CODE: Final = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID: Final = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID: Final = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID: Final = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"

SLOT_REFERENCE_ID_LIST: Final = "urn:ihe:iti:xds:2013:referenceIdList"

# Association types (ITI TF-3 §4.2.2)
ASSOC_HAS_MEMBER: Final = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
ASSOC_RPLC: Final = "urn:ihe:iti:2007:AssociationType:RPLC"
ASSOC_SIGNS: Final = "urn:ihe:iti:2007:AssociationType:signs"
ASSOC_UPDATE_AVAILABILITY: Final = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"

# Object status and response status (ebRS 3.0, ITI TF-3 §4.2.4)
STATUS_APPROVED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
STATUS_DEPRECATED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
STATUS_SUBMITTED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Submitted"
STATUS_SUCCESS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
STATUS_FAILURE: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
STATUS_PARTIAL_SUCCESS: Final = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
SEVERITY_ERROR: Final = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"

OBJECT_REF: Final = f"{{{RIM}}}ObjectRef"
