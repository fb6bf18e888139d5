"""The national registry service (the DMP's role here): XDS.b registry + repository, MHD view.

Endpoints (paths of DESIGN §5's ``endpoints.json``)

- ``POST {base}/xds/repository`` — Document Repository: ITI-41 Provide and Register Document Set-b,
  ITI-43 Retrieve Document Set (SOAP 1.2, MTOM/XOP; inline base64 accepted)
- ``POST {base}/xds/registry`` — Document Registry: ITI-18 Registry Stored Query (FindDocuments,
  GetDocuments, GetAssociations), ITI-57 Update Document Set (availability status)
- ``GET {base}/fhir/DocumentReference`` (ITI-67), ``/fhir/DocumentReference/{id}``,
  ``/fhir/Binary/{id}`` (ITI-68) — MHD read view, bearer JWT
- ``GET {base}/healthz`` — liveness, unauthenticated

SOAP calls are authenticated by their VIHF 3.0 assertion (:mod:`registry.security.vihf`); ITI-41
submissions are validated as the DMP does (:mod:`registry.xds.validation`) and must carry a DSG
signature document (:mod:`registry.security.dsg`). Settings: :class:`RegistrySettings`.
"""

from registry.app import create_app
from registry.config import RegistrySettings

__all__ = ["RegistrySettings", "create_app"]
