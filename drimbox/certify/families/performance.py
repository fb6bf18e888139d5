"""Performance: the national scenario — a CT series in JPEG-LS lossless (1300 images, ~200 MB at
full size; ``--ct-images``) — WADO-RS latency to the first image and throughput, as a viewer pulls it.

Figures are always reported; thresholds (configurable) judge them. The source side is timed on the
network face in the KOS's scope (what a consumer node sees), the generic side on the DICOMweb root.
"""

from __future__ import annotations

import time

from drimbox.certify.families._dicom import ANS_ACCEPT, kos_headers
from drimbox.certify.model import Family, Profile, Scenario
from drimbox.certify.probe import Probe

__all__ = ["SCENARIOS"]


def _time_series(probe: Probe, url: str, *, via: str, headers: dict[str, str]) -> None:
    kit = probe.data.study()
    probe.uses(f"kit-produced CT series of {len(kit.study.files)} JPEG-LS lossless images "
               f"({kit.bytes_total / 1e6:.1f} MB as files)")
    started = time.perf_counter()
    first: float | None = None
    total = 0
    with probe.wire.stream(url, via=via, headers=headers, title="timed WADO-RS series retrieve") as response:
        probe.require(response.status_code == 200, f"the series answered {response.status_code}")
        boundary_seen = 0
        for chunk in response.iter_bytes(65536):
            total += len(chunk)
            boundary_seen += chunk.count(b"\r\n\r\n")
            if first is None and boundary_seen >= 1 and total > 132:
                first = time.perf_counter() - started
        elapsed = time.perf_counter() - started
    probe.figure("latency to the first image", first if first is not None else elapsed, "s",
                 threshold=probe.options.first_image_max_s, higher_is_better=False)
    probe.figure("viewing throughput", total / 1e6 / max(elapsed, 1e-6), "MB/s",
                 threshold=probe.options.viewing_min_mb_s)
    probe.figure("series transfer time", elapsed, "s")
    probe.figure("bytes received", total / 1e6, "MB")


def _generic(probe: Probe) -> None:
    kit = probe.data.study()
    probe.require(probe.target.dicomweb is not None, "the DICOMweb root is not known")
    _time_series(probe, f"{probe.target.dicomweb}/studies/{kit.study.study_instance_uid}/series/{kit.series_uid}",
                 via="site", headers={"Accept": ANS_ACCEPT})


def _source(probe: Probe) -> None:
    publication = probe.data.publication()
    series = publication.kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    probe.require("RetrieveURL" in series, "the KOS gives no RetrieveURL to time")
    _time_series(probe, str(series.RetrieveURL), via="network",
                 headers=kos_headers(str(publication.kos.SOPInstanceUID)))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("perf.wado.viewing", Family.PERFORMANCE, "WADO-RS viewing of the CT series: first image, throughput",
             frozenset({Profile.DICOMWEB}), _generic, reference="ANS informatif/Performances"),
    Scenario("perf.source.retrieve", Family.PERFORMANCE, "Source: a consumer's WADO-RS of the CT series through the "
             "RetrieveURL (latency, throughput)", frozenset({Profile.SOURCE}), _source, requirement="DB.SO.102",
             reference="ANS informatif/Performances (DRIMBox source)"),
)
