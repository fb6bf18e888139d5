"""Fixed identifiers of XDS.b: namespaces, SOAP actions, classification schemes, stored queries.

Values from IHE ITI TF-3 4.2.5 (metadata UUIDs), ITI TF-2 3.18.4.1.2.3.7 (stored query ids), and
the WSDL actions of ITI-18/41/43/57 (ITI TF-2 3.18.5, 3.41.5, 3.43.5, 3.57.5).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACTION", "NS", "SCHEME", "STATUS", "STORED_QUERY", "AssociationType", "ObjectType", "ResponseStatus"]

NS: Final = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xades": "http://uri.etsi.org/01903/v1.3.2#",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "hl7": "urn:hl7-org:v3",
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
    "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0",
    "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0",
    "query": "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0",
    "xdsb": "urn:ihe:iti:xds-b:2007",
    "rmd": "urn:ihe:iti:rmd:2017",
    "xop": "http://www.w3.org/2004/08/xop/include",
}


class ACTION:
    """WS-Addressing actions (request and response) of the transactions the node sends."""

    ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
    ITI18_RESPONSE = "urn:ihe:iti:2007:RegistryStoredQueryResponse"
    ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    ITI41_RESPONSE = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
    ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
    ITI43_RESPONSE = "urn:ihe:iti:2007:RetrieveDocumentSetResponse"
    ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
    ITI57_RESPONSE = "urn:ihe:iti:2010:UpdateDocumentSetResponse"


class SCHEME:
    """classificationScheme / identificationScheme UUIDs (ITI TF-3 Table 4.2.5-1)."""

    SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
    SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
    SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
    SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
    SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
    SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
    DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
    DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
    DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
    DE_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
    DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
    DE_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
    DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
    DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
    DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
    DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"


class ObjectType:
    """ExtrinsicObject objectType of a stable document entry."""

    STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
    ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"


class AssociationType:
    """associationType values (ITI TF-3 4.2.2)."""

    HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
    RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
    SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
    UPDATE_AVAILABILITY_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"


class STATUS:
    """availabilityStatus values."""

    APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
    DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"


class ResponseStatus:
    """RegistryResponse status values (ITI TF-3 4.2.4.2)."""

    SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
    PARTIAL_SUCCESS = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
    FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"


class STORED_QUERY:
    """Registry Stored Query ids (ITI TF-2 3.18.4.1.2.3.7)."""

    FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
    GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
    GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
