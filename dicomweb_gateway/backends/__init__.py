"""Backends that live inside the gateway package (the drimbox PACS bridges live in drimbox)."""

from dicomweb_gateway.backends.filesystem import FileStore, StoredInstance

__all__ = ["FileStore", "StoredInstance"]
