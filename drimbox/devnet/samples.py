"""Sample studies the demo loads into site A's PACS: screening mammography, CT and MR.

The mammography studies have one series per view (``R CC``, ``L CC``, ``R MLO``, ``L MLO``), so that OHIF
hangs them with its mammography protocol ``@ohif/hpMammo``, and no VOI LUT Function (which OHIF 3.13.2
misreads). Generated (synthetic, no patient data) into
``WORKDIR/samples`` and sent to the PACS with the node's own C-STORE SCU, under the site node's AE title
(the only calling AE the PACS accepts stores from).
Each study's report then goes to site A's node over MLLP, which publishes its KOS to the registry
(the MR's patient has no INS: its report is acknowledged, then dead-lettered, as the DMP requires).
"""

from __future__ import annotations

from collections.abc import Iterator

from drimbox.config import DimseSettings, LocalAE
from drimbox.devnet.network import DemoNetwork
from drimbox.pacs import PacsClient
from drimbox.testdata import GeneratedStudy, make_patient, write_ct_study, write_mammography_study, write_mr_study

__all__ = ["load_demo_samples"]


def _studies(network: DemoNetwork, *, full_size: bool) -> Iterator[tuple[str, GeneratedStudy]]:
    root = network.workdir / "samples"
    screened = make_patient(1, sex="F", with_ins=True)
    yield (
        "screening mammography",
        write_mammography_study(root / "mg", screened, size="full" if full_size else "small", seed=1,
                                series_per_view=True, voi_lut_function=None),
    )
    yield (
        "prior screening mammography",
        write_mammography_study(root / "mg-prior", screened, size="small", seed=2, study_date="20240312",
                                series_per_view=True, voi_lut_function=None),
    )
    yield "CT", write_ct_study(root / "ct", make_patient(2, sex="M", with_ins=True), seed=3)
    yield "MR (patient without INS)", write_mr_study(root / "mr", make_patient(3, sex="F", with_ins=False), seed=4)


def load_demo_samples(network: DemoNetwork, *, full_size: bool = True) -> Iterator[str]:
    """Generate and C-STORE the sample studies into site A's PACS; yield a label per study loaded."""
    site = network.sites[0]
    orthanc = network.orthanc(site.name)
    client = PacsClient(
        local=LocalAE(aet=site.node_aet, host=site.address, port=site.dimse_port),
        remote=orthanc.remote_ae(),
        dimse=DimseSettings(),
    )
    try:
        for label, study in _studies(network, full_size=full_size):
            client.store(study.files)
            # The RIS's validated report: the node queues it (ACK) and publishes the KOS (F1 → F3).
            ack = network.send_report(site.name, study)
            yield f"{label} ({len(study.files)} instances, accession {study.accession_number}, report ACK {ack})"
    finally:
        client.close()
