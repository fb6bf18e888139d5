"""The national performance scenario at full size (1300 JPEG-LS images, ~200 MB) against Orthanc's
DICOMweb: figures reported, thresholds applied. Slow (generation + STOW of 200 MB): ``-m slow``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drimbox.devnet.orthanc import OrthancProcess
from tests.certify.reports import certify


@pytest.mark.slow
def test_national_ct_series(orthanc_a_clean: OrthancProcess, tmp_path: Path) -> None:
    run = certify(tmp_path, "--node", orthanc_a_clean.dicomweb_url, "--profile", "dicomweb", "--only", "performance",
                  "--ct-images", "1300")
    case = run.cases["perf.wado.viewing"]
    received = re.search(r"bytes received = ([\d.]+) MB", case.evidence)
    assert received and float(received.group(1)) > 150, case.evidence[-500:]
    assert case.verdict == "pass", case.failure
