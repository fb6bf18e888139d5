"""The national registry service: XDS.b registry and repository, MHD view, signed trust list."""

from registry.app import create_app
from registry.config import RegistrySettings

__all__ = ["RegistrySettings", "create_app"]
