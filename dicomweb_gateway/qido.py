"""QIDO-RS: Search Transaction (PS3.18 §10.6), the six resource paths over one handler.

Results are ``application/dicom+json`` built by pydicom. An empty result is ``200`` with ``[]``
(CP-2473: a 204 cannot carry the empty array, and a C-FIND with no match is a Success too).
When more matches exist beyond the page returned, the response carries PS3.18 §8.3.4.4's
``Warning: 299`` so the client knows to ask for the next page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from starlette.concurrency import run_in_threadpool

from dicomweb_gateway.backend import DicomStore, QueryLevel
from dicomweb_gateway.deps import BaseUrlDep, SettingsDep, StoreDep
from dicomweb_gateway.dicomjson import BINARY_VRS, dumps
from dicomweb_gateway.negotiation import choose_media_type
from dicomweb_gateway.query import QidoRequest, parse_search
from dicomweb_gateway.settings import GatewaySettings
from dicomweb_gateway.uids import check_uid

__all__ = ["TRUNCATION_WARNING", "collect_page", "create_qido_router", "result_json"]

TRUNCATION_WARNING = (
    "The number of results exceeded the maximum supported by the server. Additional results can be requested."
)
_MEDIA_TYPES = ("application/dicom+json", "application/json")
_SPECIFIC_CHARACTER_SET = 0x00080005
_RETRIEVE_URL = 0x00081190
_INSTANCE_AVAILABILITY = 0x00080056


def collect_page(store: DicomStore, request: QidoRequest) -> tuple[list[Dataset], bool]:
    """Run the search, skip ``offset``, keep ``limit`` results, and say whether more exist.

    The backend's iterator is closed as soon as one result past the page has been seen.
    """
    it = store.search(request.query)
    page: list[Dataset] = []
    more = False
    try:
        for index, ds in enumerate(it):
            if index < request.offset:
                continue
            if len(page) == request.limit:
                more = True
                break
            page.append(ds)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return page, more


def result_json(ds: Dataset, request: QidoRequest, base_url: str) -> dict[str, Any]:
    """One search result as DICOM JSON: the requested attributes (empty when unknown), computed
    ``RetrieveURL``, and ``SpecificCharacterSet`` ``ISO_IR 192`` since JSON text is UTF-8."""
    level = request.query.level
    out = Dataset()
    if request.query.include_all:
        for elem in ds:
            if elem.VR not in BINARY_VRS:
                out.add(elem)
    for tag in request.return_tags:
        if tag not in out:
            out.add(ds[tag] if tag in ds else _empty(tag))
    if _SPECIFIC_CHARACTER_SET in out:
        out.SpecificCharacterSet = "ISO_IR 192"
    if _INSTANCE_AVAILABILITY in out and not out[_INSTANCE_AVAILABILITY].value:
        out.InstanceAvailability = "ONLINE"  # we serve it: a backend that knows better says so
    if _RETRIEVE_URL in out:
        out.RetrieveURL = _retrieve_url(ds, level, base_url)
    json: dict[str, Any] = out.to_json_dict(bulk_data_threshold=1 << 62)
    return json


def _empty(tag: BaseTag) -> DataElement:
    vr = dictionary_VR(tag).split(" or ")[0]
    return DataElement(tag, vr, Sequence() if vr == "SQ" else None)


def _retrieve_url(ds: Dataset, level: QueryLevel, base_url: str) -> str:
    url = f"{base_url}/studies/{ds.StudyInstanceUID}"
    if level != QueryLevel.STUDY:
        url += f"/series/{ds.SeriesInstanceUID}"
    if level == QueryLevel.IMAGE:
        url += f"/instances/{ds.SOPInstanceUID}"
    return url


async def _search(
    request: Request,
    store: DicomStore,
    settings: GatewaySettings,
    base_url: str,
    level: QueryLevel,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    media_type = choose_media_type(request.headers.get("accept"), _MEDIA_TYPES)
    qido = parse_search(
        level,
        request.query_params.multi_items(),
        study_uid=check_uid(study, "StudyInstanceUID") if study is not None else None,
        series_uid=check_uid(series, "SeriesInstanceUID") if series is not None else None,
        max_results=settings.max_results,
    )
    page, more = await run_in_threadpool(collect_page, store, qido)
    body = [result_json(ds, qido, base_url) for ds in page]
    headers = {}
    if more:
        headers["Warning"] = f'299 {request.url.netloc or "-"}: "{TRUNCATION_WARNING}"'
    return Response(dumps(body), media_type=media_type, headers=headers)


def create_qido_router() -> APIRouter:
    """The QIDO-RS routes (PS3.18 §10.6.1, Table 10.6.1-1)."""
    router = APIRouter(tags=["QIDO-RS"])

    @router.get("/studies")
    async def search_studies(request: Request, store: StoreDep, settings: SettingsDep, base: BaseUrlDep) -> Response:
        """Search for studies."""
        return await _search(request, store, settings, base, QueryLevel.STUDY)

    @router.get("/series")
    async def search_all_series(request: Request, store: StoreDep, settings: SettingsDep, base: BaseUrlDep) -> Response:
        """Search for series in all studies."""
        return await _search(request, store, settings, base, QueryLevel.SERIES)

    @router.get("/studies/{study}/series")
    async def search_series(
        request: Request, study: str, store: StoreDep, settings: SettingsDep, base: BaseUrlDep
    ) -> Response:
        """Search for series of one study."""
        return await _search(request, store, settings, base, QueryLevel.SERIES, study)

    @router.get("/instances")
    async def search_all_instances(
        request: Request, store: StoreDep, settings: SettingsDep, base: BaseUrlDep
    ) -> Response:
        """Search for instances in all studies."""
        return await _search(request, store, settings, base, QueryLevel.IMAGE)

    @router.get("/studies/{study}/instances")
    async def search_study_instances(
        request: Request, study: str, store: StoreDep, settings: SettingsDep, base: BaseUrlDep
    ) -> Response:
        """Search for instances of one study."""
        return await _search(request, store, settings, base, QueryLevel.IMAGE, study)

    @router.get("/studies/{study}/series/{series}/instances")
    async def search_series_instances(
        request: Request, study: str, series: str, store: StoreDep, settings: SettingsDep, base: BaseUrlDep
    ) -> Response:
        """Search for instances of one series."""
        return await _search(request, store, settings, base, QueryLevel.IMAGE, study, series)

    return router
