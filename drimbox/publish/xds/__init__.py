"""XDS.b Document Source / Consumer / Update Initiator: ITI-41, ITI-18, ITI-43, ITI-57.

Generic IHE ITI pieces (ebRIM metadata, SOAP 1.2 + WS-Addressing, MTOM/XOP, IHE DSG signature,
XML signing); the DMP's own choices live in :mod:`drimbox.publish.dmp` and :mod:`drimbox.publish.vihf`.
"""

from drimbox.publish.xds.client import RetrievedDocument, XdsClient, XdsEndpoints
from drimbox.publish.xds.dsg import dsg_signature, verify_dsg
from drimbox.publish.xds.requests import DocumentPart, FindDocumentsQuery
from drimbox.publish.xds.rim import (
    Association,
    Author,
    Code,
    DocumentEntry,
    RegistryDocument,
    Submission,
    SubmissionSet,
    dtm,
    submit_objects_request,
)
from drimbox.publish.xds.signing import Signer
from drimbox.publish.xds.vocabulary import STATUS, AssociationType

__all__ = [
    "STATUS",
    "Association",
    "AssociationType",
    "Author",
    "Code",
    "DocumentEntry",
    "DocumentPart",
    "FindDocumentsQuery",
    "RegistryDocument",
    "RetrievedDocument",
    "Signer",
    "Submission",
    "SubmissionSet",
    "XdsClient",
    "XdsEndpoints",
    "dsg_signature",
    "dtm",
    "submit_objects_request",
    "verify_dsg",
]
