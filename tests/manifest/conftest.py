"""Manifest tests reuse the HL7 test helpers (the reports of the ANS samples)."""

from __future__ import annotations

import sys
from pathlib import Path

_HL7_TESTS = str(Path(__file__).resolve().parents[1] / "hl7")
if _HL7_TESTS not in sys.path:
    sys.path.insert(0, _HL7_TESTS)
