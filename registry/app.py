"""Assembly of the registry's HTTP app.

The registry is the national index of study references (the DMP's role in production). Its XDS.b
transactions, MHD view and signed trust list are mounted here as they land; only liveness exists
in the foundation step.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from registry.config import RegistrySettings

__all__ = ["create_app"]

_VERSION = "0.1.0"


class Health(BaseModel):
    status: str
    service: str
    version: str


def create_app(settings: RegistrySettings) -> FastAPI:
    """Build the registry app from its settings."""
    app = FastAPI(title="DRIM-M registry", version=_VERSION)
    app.state.settings = settings

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok", service="registry", version=_VERSION)

    return app
