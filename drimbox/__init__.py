"""DRIM-M style imaging sharing node.

The node bridges the site's PACS (DIMSE and DICOMweb), publishes KOS manifests to the national
registry, serves images to trusted peers and retrieves studies from them.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
