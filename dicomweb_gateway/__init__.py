"""DICOMweb (PS3.18) server: QIDO-RS, WADO-RS, STOW-RS over a pluggable DICOM store backend.

This package imports neither ``drimbox`` nor ``registry``: its backends come in through a Protocol.
"""

__all__: list[str] = []
