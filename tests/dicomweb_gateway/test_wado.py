"""WADO-RS over a real uvicorn server with dicomweb-client as an independent client."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from fastapi.testclient import TestClient
from gwtest import Corpus, LiveServer, instance_path
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut, apply_windowing

from dicomweb_gateway import FileStore, create_app
from dicomweb_gateway.dicomjson import BINARY_VRS


@pytest.fixture(scope="module")
def dwc(live: LiveServer) -> Iterator[DICOMwebClient]:
    """dicomweb-client against the live server."""
    session = requests.Session()
    yield DICOMwebClient(live.url, session=session)
    session.close()


def by_uid(datasets: list[Dataset]) -> dict[str, Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in datasets}


def test_retrieve_study_pixel_identical(dwc: DICOMwebClient, corpus: Corpus) -> None:
    """Every instance of the study, pixel data byte-identical to the stored files."""
    got = by_uid(dwc.retrieve_study(corpus.mammo.study_instance_uid))
    stored = by_uid([dcmread(f) for f in corpus.mammo.files])
    assert set(got) == set(stored)
    for uid, ds in stored.items():
        assert got[uid].PixelData == ds.PixelData
        assert got[uid].PatientName == ds.PatientName


def test_retrieve_series_and_instance(dwc: DICOMwebClient, corpus: Corpus) -> None:
    """Series and instance levels."""
    ct = [dcmread(f) for f in corpus.ct.files]
    series_uid = ct[0].SeriesInstanceUID
    got = by_uid(dwc.retrieve_series(corpus.ct.study_instance_uid, series_uid))
    expected = {str(ds.SOPInstanceUID): ds for ds in ct if ds.SeriesInstanceUID == series_uid}
    assert set(got) == set(expected)
    assert all(got[u].PixelData == expected[u].PixelData for u in expected)
    one = dwc.retrieve_instance(corpus.ct.study_instance_uid, series_uid, ct[0].SOPInstanceUID)
    assert one.PixelData == ct[0].PixelData


def _expected_json(elem_json: dict[str, object], stored: object) -> None:
    """Compare one JSON element with the stored element's pydicom JSON."""
    assert elem_json == stored


def test_metadata_element_by_element(dwc: DICOMwebClient, corpus: Corpus) -> None:
    """Study metadata equals the stored data sets; every BulkDataURI returns the stored bytes."""
    metadata = dwc.retrieve_study_metadata(corpus.mammo.study_instance_uid)
    stored = by_uid([dcmread(f) for f in corpus.mammo.files])
    assert len(metadata) == len(stored)
    bulk_seen = 0
    for item in metadata:
        ds = stored[item["00080018"]["Value"][0]]
        assert set(item) == {f"{int(e.tag):08X}" for e in ds}
        for elem in ds:
            key = f"{int(elem.tag):08X}"
            if "BulkDataURI" in item[key]:
                assert elem.VR in BINARY_VRS
                [value] = dwc.retrieve_bulkdata(item[key]["BulkDataURI"])
                assert value == elem.value
                bulk_seen += 1
            else:
                assert item[key] == elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=1 << 40)
    assert bulk_seen == len(stored)  # Pixel Data of each view


def test_metadata_levels(dwc: DICOMwebClient, corpus: Corpus) -> None:
    """Series and instance metadata."""
    first = corpus.ct.instances[0]
    series = dwc.retrieve_series_metadata(corpus.ct.study_instance_uid, first.series_instance_uid)
    assert len(series) == sum(1 for i in corpus.ct.instances if i.series_instance_uid == first.series_instance_uid)
    instance = dwc.retrieve_instance_metadata(
        corpus.ct.study_instance_uid, first.series_instance_uid, first.sop_instance_uid
    )
    assert instance["00080018"]["Value"] == [first.sop_instance_uid]


def test_frames(dwc: DICOMwebClient, corpus: Corpus) -> None:
    """Single-frame and multi-frame (frames 1 and 3) equal the stored pixel data."""
    inst = corpus.mammo.instances[0]
    ds = dcmread(corpus.mammo.files[0])
    [frame] = dwc.retrieve_instance_frames(
        corpus.mammo.study_instance_uid, inst.series_instance_uid, inst.sop_instance_uid, frame_numbers=[1]
    )
    assert frame == ds.PixelData
    mf = dcmread(corpus.multiframe)
    size = mf.Rows * mf.Columns * mf.BitsAllocated // 8
    frames = dwc.retrieve_instance_frames(
        mf.StudyInstanceUID, mf.SeriesInstanceUID, mf.SOPInstanceUID, frame_numbers=[1, 3]
    )
    assert frames == [mf.PixelData[:size], mf.PixelData[2 * size : 3 * size]]


def test_frames_of_compressed_instance(client: TestClient, corpus: Corpus) -> None:
    """JPEG-LS stored: octet-stream frames are decoded; transfer-syntax=* gives the stored bitstream."""
    from gwtest import split_parts
    from pydicom.encaps import get_frame

    ds = dcmread(corpus.mr_jpegls.files[0])
    url = instance_path(corpus.mr_jpegls) + "/frames/1"
    r = client.get(url, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    [(headers, body)] = split_parts(r.content, r.headers["content-type"])
    assert np.array_equal(np.frombuffer(body, dtype="<u2").reshape(ds.Rows, ds.Columns), ds.pixel_array)
    r = client.get(url, headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    [(headers, body)] = split_parts(r.content, r.headers["content-type"])
    assert headers["content-type"].startswith("image/jls")
    assert body == get_frame(ds.PixelData, 0, number_of_frames=1)


def _reference_8bit(ds: Dataset) -> np.ndarray:
    """pydicom's VOI LUT output scaled from its window output range to 8 bits."""
    out = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    bits = ds.BitsStored
    low, high = 0.0, float(2**bits - 1)
    return np.clip(np.rint((out - low) * 255.0 / (high - low)), 0, 255)


@pytest.mark.parametrize("media_type", ["image/png", "image/jpeg"])
def test_rendered_mammogram_matches_voi_lut(dwc: DICOMwebClient, corpus: Corpus, media_type: str) -> None:
    """The rendered 12-bit mammogram matches pydicom's apply_voi_lut output within MAE < 2 grey levels."""
    inst = corpus.mammo.instances[0]
    ds = dcmread(corpus.mammo.files[0])
    data = dwc.retrieve_instance_rendered(
        corpus.mammo.study_instance_uid, inst.series_instance_uid, inst.sop_instance_uid, media_types=(media_type,)
    )
    image = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64)
    assert image.shape == (ds.Rows, ds.Columns)
    assert float(np.mean(np.abs(image - _reference_8bit(ds)))) < 2.0


def test_rendered_window_viewport_quality(client: TestClient, corpus: Corpus) -> None:
    """window= overrides the VOI, viewport= fits the size, quality= changes JPEG size."""
    ds = dcmread(corpus.mammo.files[0])
    url = instance_path(corpus.mammo) + "/rendered"
    r = client.get(url, params={"window": "1000,500,linear"}, headers={"Accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    voi = Dataset()
    voi.update({"BitsStored": ds.BitsStored, "PixelRepresentation": 0, "PhotometricInterpretation": "MONOCHROME2"})
    voi.WindowCenter, voi.WindowWidth, voi.VOILUTFunction = 1000, 500, "LINEAR"
    expected = np.clip(np.rint(apply_windowing(ds.pixel_array.astype(float), voi) * 255.0 / (2**ds.BitsStored - 1)),
                       0, 255)  # fmt: skip
    got = np.asarray(Image.open(io.BytesIO(r.content)), dtype=np.float64)
    assert float(np.mean(np.abs(got - expected))) < 1.0
    small = Image.open(io.BytesIO(client.get(url, params={"viewport": "100,100"}).content))
    assert max(small.size) == 100
    thumb = Image.open(io.BytesIO(client.get(instance_path(corpus.mammo) + "/thumbnail").content))
    assert max(thumb.size) == 128
    q10 = client.get(url, params={"quality": "10"}).content
    q95 = client.get(url, params={"quality": "95"}).content
    assert len(q10) < len(q95)
    for params in ({"quality": "0"}, {"window": "1,2"}, {"viewport": "x,1"}, {"window": "1,-2,linear"}):
        assert client.get(url, params=params).status_code == 400


def test_monochrome1_is_inverted(tmp_path: Path, corpus: Corpus) -> None:
    """A MONOCHROME1 image renders inverted relative to the same pixels as MONOCHROME2."""
    ds = dcmread(corpus.mammo.files[0])
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "m1.dcm"
    ds.save_as(path)
    fs = FileStore(tmp_path / "fs")
    fs.add(path)
    with TestClient(create_app(fs)) as c:
        r = c.get(instance_path(corpus.mammo) + "/rendered", headers={"Accept": "image/png"})
    got = np.asarray(Image.open(io.BytesIO(r.content)), dtype=np.float64)
    assert float(np.mean(np.abs(got - (255 - _reference_8bit(dcmread(corpus.mammo.files[0])))))) < 1.0


def test_series_and_study_thumbnails(client: TestClient, corpus: Corpus) -> None:
    """Representative thumbnails."""
    study = corpus.ct.study_instance_uid
    series = corpus.ct.instances[0].series_instance_uid
    for url in (f"/dicom-web/studies/{study}/thumbnail", f"/dicom-web/studies/{study}/series/{series}/thumbnail"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


def test_not_found_and_bad_paths(client: TestClient, corpus: Corpus) -> None:
    """404 for what does not exist, 400 for malformed UIDs and frame lists."""
    assert client.get("/dicom-web/studies/1.2.3.4").status_code == 404
    assert client.get("/dicom-web/studies/1.2.3.4/metadata").status_code == 404
    assert client.get("/dicom-web/studies/1.2.03").status_code == 400
    base = instance_path(corpus.mammo)
    assert client.get(base + "/frames/2").status_code == 404
    assert client.get(base + "/frames/0").status_code == 400
    assert client.get(base + "/frames/1,x").status_code == 400
    assert client.get(base + "/bulkdata/7FE00011").status_code == 404
    assert client.get(base + "/bulkdata/zz").status_code == 404
