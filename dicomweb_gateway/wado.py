"""WADO-RS: Retrieve Transaction (PS3.18 §10.4) — instances, metadata, frames, bulk data, rendered.

Retrieves stream: the backend's first instance is pulled before the response starts (so that
404/406/503 are still possible), then each part is written as soon as its instance arrives and
the next one is asked for only when the previous part has left. The response's top-level
``transfer-syntax`` parameter is that of the first part; every part carries its own.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dicomweb_gateway.backend import DicomStore, InstanceFile, QueryLevel, RetrieveTarget
from dicomweb_gateway.deps import BaseUrlDep, SettingsDep, StoreDep
from dicomweb_gateway.dicomjson import dataset_json, dumps
from dicomweb_gateway.errors import NotAcceptable, NotFound
from dicomweb_gateway.multipart import Part, iter_multipart, new_boundary
from dicomweb_gateway.negotiation import DicomRepresentation, choose_media_type, negotiate_dicom, negotiate_frames
from dicomweb_gateway.pixels import bulk_value, parse_frame_list, read_frames, read_instance
from dicomweb_gateway.rendering import RenderOptions, parse_render_options, render_frame
from dicomweb_gateway.settings import GatewaySettings
from dicomweb_gateway.streaming import Demand, aiterate_closing, aiterate_read_ahead, close_quietly, first_item, paced
from dicomweb_gateway.syntaxes import deliverable_syntaxes
from dicomweb_gateway.transcode import available_media_types, encode_instance, plan_syntax
from dicomweb_gateway.uids import check_uid

__all__ = ["create_wado_router", "instance_url"]

_log = logging.getLogger(__name__)
_RENDERED_TYPES = ("image/jpeg", "image/png")
_READ_AHEAD_CHUNKS = 4
T = TypeVar("T")


def instance_url(base_url: str, instance: InstanceFile) -> str:
    """The WADO-RS URL of one instance."""
    return f"{base_url}/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_instance_uid}"


def _target(study: str, series: str | None = None, instance: str | None = None) -> RetrieveTarget:
    return RetrieveTarget(
        check_uid(study, "StudyInstanceUID"),
        check_uid(series, "SeriesInstanceUID") if series is not None else None,
        check_uid(instance, "SOPInstanceUID") if instance is not None else None,
    )


async def _open(store: DicomStore, target: RetrieveTarget) -> tuple[InstanceFile, Iterator[InstanceFile]]:
    """Start a retrieve and pull its first instance (404 when there is none)."""
    it = store.retrieve(target)
    try:
        first = await first_item(it)
    except BaseException:
        await close_quietly(it)
        raise
    if first is None:
        await close_quietly(it)
        raise NotFound(f"no such {target.level.value.lower()}: {_describe(target)}")
    return first, it


def _describe(target: RetrieveTarget) -> str:
    return target.sop_instance_uid or target.series_uid or target.study_uid


async def _with_instance(store: DicomStore, target: RetrieveTarget, work: Callable[[InstanceFile], T]) -> T:
    """Run ``work`` on the target's first instance in a worker thread, the retrieve still open."""
    first, it = await _open(store, target)
    try:
        return await run_in_threadpool(work, first)
    finally:
        await close_quietly(it)


def _chain_closing(first: InstanceFile, it: Iterator[InstanceFile]) -> Iterator[InstanceFile]:
    try:
        yield from itertools.chain([first], it)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


# ------------------------------------------------------------------------------------ instances


def _instance_parts(
    instances: Iterator[InstanceFile], rep: DicomRepresentation, settings: GatewaySettings, base_url: str
) -> Iterator[Part]:
    try:
        for instance in instances:
            encoded = encode_instance(instance, rep, encode=settings.encode_compressed)
            if encoded is None:
                # The status line has gone already: leave this instance out rather than break the
                # whole response (PS3.18 lets a retrieve return what it can).
                _log.warning("instance %s (%s) cannot be delivered in any accepted transfer syntax; skipped",
                             instance.sop_instance_uid, instance.transfer_syntax)  # fmt: skip
                continue
            content_type = f"application/dicom; transfer-syntax={encoded.transfer_syntax}"
            yield Part(content_type, encoded.body, {"Content-Location": instance_url(base_url, instance)})
    finally:
        close = getattr(instances, "close", None)
        if close is not None:
            close()


async def _retrieve(
    request: Request, store: DicomStore, settings: GatewaySettings, base_url: str, target: RetrieveTarget
) -> Response:
    rep = negotiate_dicom(request.headers.get("accept"), single_part_ok=target.level == QueryLevel.IMAGE)
    first, it = await _open(store, target)
    planned = plan_syntax(first, rep, encode=settings.encode_compressed)
    if planned is None:
        await close_quietly(it)
        offered = deliverable_syntaxes(first.transfer_syntax, has_pixels=True, encode=settings.encode_compressed)
        raise NotAcceptable(
            f"instance {first.sop_instance_uid} is stored as {first.transfer_syntax}; none of the accepted "
            "transfer syntaxes can be delivered without loss",
            available_media_types(offered),
        )
    # A backend whose files are all on disk already (the cache: ``on_disk``) is read ahead across
    # instances; any other is asked for its next instance only once the previous one has left.
    demand = None if getattr(it, "on_disk", False) else Demand()
    instances = _chain_closing(first, it if demand is None else paced(it, demand))
    if not rep.multipart:
        encoded = await run_in_threadpool(encode_instance, first, rep, encode=settings.encode_compressed)
        await close_quietly(instances)
        if encoded is None:
            raise NotAcceptable("the instance cannot be delivered in the accepted transfer syntaxes")
        media = f"application/dicom; transfer-syntax={encoded.transfer_syntax}"
        chunks = _single_body(encoded.body, settings.chunk_bytes)
        return StreamingResponse(_read_ahead(chunks, settings), media_type=media)
    boundary = new_boundary()
    parts = _instance_parts(instances, rep, settings, base_url)
    body = iter_multipart(parts, boundary, chunk_bytes=settings.chunk_bytes)
    media = f'multipart/related; type="application/dicom"; transfer-syntax={planned}; boundary={boundary}'
    return StreamingResponse(_read_ahead(body, settings, demand), media_type=media)


def _read_ahead(
    chunks: Iterator[bytes], settings: GatewaySettings, demand: Demand | None = None
) -> AsyncIterator[bytes]:
    """Bodies are read a few chunks ahead of the socket (see :mod:`dicomweb_gateway.streaming`)."""
    return aiterate_read_ahead(chunks, max_ahead_bytes=_READ_AHEAD_CHUNKS * settings.chunk_bytes, demand=demand)


def _single_body(body: Path | bytes, chunk_bytes: int) -> Iterator[bytes]:
    if isinstance(body, bytes):
        yield body
        return
    with body.open("rb", buffering=0) as f:
        while chunk := f.read(chunk_bytes):
            yield chunk


# ------------------------------------------------------------------------------------- metadata


def _bulk_uri(url: str) -> Callable[[str], str]:
    def uri(path: str) -> str:
        return f"{url}/bulkdata/{path}"

    return uri


def _metadata_chunks(instances: Iterator[InstanceFile], settings: GatewaySettings, base_url: str) -> Iterator[bytes]:
    threshold = settings.bulk_data_threshold
    try:
        yield b"["
        for index, instance in enumerate(instances):
            ds = read_instance(instance.path, defer_size=max(threshold, 4096))
            json = dataset_json(ds, bulk_data_threshold=threshold, bulk_uri=_bulk_uri(instance_url(base_url, instance)))
            yield (b"," if index else b"") + dumps(json)
        yield b"]"
    finally:
        close = getattr(instances, "close", None)
        if close is not None:
            close()


async def _metadata(
    request: Request, store: DicomStore, settings: GatewaySettings, base_url: str, target: RetrieveTarget
) -> Response:
    media_type = choose_media_type(request.headers.get("accept"), ("application/dicom+json", "application/json"))
    first, it = await _open(store, target)
    chunks = _metadata_chunks(_chain_closing(first, it), settings, base_url)
    return StreamingResponse(aiterate_closing(chunks), media_type=media_type)


# ------------------------------------------------------------------------------ frames and bulk


def _multipart_response(items: list[tuple[str, bytes]], media_type: str) -> Response:
    boundary = new_boundary()
    body = b"".join(iter_multipart((Part(ct, data) for ct, data in items), boundary))
    return Response(body, media_type=f'multipart/related; type="{media_type}"; boundary={boundary}')


async def _frames(request: Request, store: DicomStore, target: RetrieveTarget, frame_list: str) -> Response:
    numbers = parse_frame_list(frame_list)
    accept = request.headers.get("accept")

    def work(instance: InstanceFile) -> Response:
        rep = negotiate_frames(accept, instance.transfer_syntax)
        frames = read_frames(instance.path, numbers, rep)
        content_type = f"{rep.media_type}; transfer-syntax={rep.transfer_syntax}"
        return _multipart_response([(content_type, f) for f in frames], rep.media_type)

    return await _with_instance(store, target, work)


async def _bulk(request: Request, store: DicomStore, target: RetrieveTarget, path: str) -> Response:
    accept = request.headers.get("accept")

    def work(instance: InstanceFile) -> Response:
        rep = negotiate_frames(accept, "1.2.840.10008.1.2.1")
        value = bulk_value(instance.path, path)
        return _multipart_response([(f"{rep.media_type}", value)], rep.media_type)

    return await _with_instance(store, target, work)


# ------------------------------------------------------------------------------------- rendered


def _render_options(request: Request, settings: GatewaySettings, *, thumbnail: bool) -> RenderOptions:
    media_type = choose_media_type(request.headers.get("accept"), _RENDERED_TYPES)
    viewport = (settings.thumbnail_size, settings.thumbnail_size) if thumbnail else None
    return parse_render_options(
        dict(request.query_params), media_type=media_type, default_quality=settings.rendered_quality,
        default_viewport=viewport,
    )  # fmt: skip


async def _rendered(
    request: Request, store: DicomStore, settings: GatewaySettings, target: RetrieveTarget, frame: str | None,
    *, thumbnail: bool = False,
) -> Response:  # fmt: skip
    options = _render_options(request, settings, thumbnail=thumbnail)
    numbers = parse_frame_list(frame) if frame is not None else [1]

    def work(instance: InstanceFile) -> bytes:
        ds = read_instance(instance.path)
        return render_frame(ds, numbers[0], options)

    return Response(await _with_instance(store, target, work), media_type=options.media_type)


async def _representative_thumbnail(
    request: Request, store: DicomStore, settings: GatewaySettings, target: RetrieveTarget
) -> Response:
    """Study/series thumbnail: the first instance that has pixel data (PS3.18 §10.4.1.1.6)."""
    options = _render_options(request, settings, thumbnail=True)
    first, it = await _open(store, target)

    def work() -> bytes:
        for instance in itertools.chain([first], it):
            ds = read_instance(instance.path)
            if "PixelData" in ds:
                return render_frame(ds, 1, options)
        raise NotFound(f"no image in {_describe(target)}")

    try:
        return Response(await run_in_threadpool(work), media_type=options.media_type)
    finally:
        await close_quietly(it)


# --------------------------------------------------------------------------------------- router


def create_wado_router() -> APIRouter:
    """The WADO-RS routes (PS3.18 §10.4.1, Tables 10.4.1-1 to -4)."""
    router = APIRouter(tags=["WADO-RS"])
    instance_path = "/studies/{study}/series/{series}/instances/{instance}"

    @router.get("/studies/{study}")
    async def retrieve_study(
        request: Request, study: str, store: StoreDep, settings: SettingsDep, base: BaseUrlDep
    ) -> Response:
        """Retrieve every instance of a study."""
        return await _retrieve(request, store, settings, base, _target(study))

    @router.get("/studies/{study}/series/{series}")
    async def retrieve_series(
        request: Request, study: str, series: str, store: StoreDep, settings: SettingsDep, base: BaseUrlDep
    ) -> Response:
        """Retrieve every instance of a series."""
        return await _retrieve(request, store, settings, base, _target(study, series))

    @router.get(instance_path)
    async def retrieve_instance(
        request: Request, study: str, series: str, instance: str, store: StoreDep, settings: SettingsDep,
        base: BaseUrlDep,
    ) -> Response:  # fmt: skip
        """Retrieve one instance."""
        return await _retrieve(request, store, settings, base, _target(study, series, instance))

    @router.get("/studies/{study}/metadata")
    async def study_metadata(
        request: Request, study: str, store: StoreDep, settings: SettingsDep, base: BaseUrlDep
    ) -> Response:
        """Metadata of every instance of a study."""
        return await _metadata(request, store, settings, base, _target(study))

    @router.get("/studies/{study}/series/{series}/metadata")
    async def series_metadata(
        request: Request, study: str, series: str, store: StoreDep, settings: SettingsDep, base: BaseUrlDep
    ) -> Response:
        """Metadata of every instance of a series."""
        return await _metadata(request, store, settings, base, _target(study, series))

    @router.get(instance_path + "/metadata")
    async def instance_metadata(
        request: Request, study: str, series: str, instance: str, store: StoreDep, settings: SettingsDep,
        base: BaseUrlDep,
    ) -> Response:  # fmt: skip
        """Metadata of one instance."""
        return await _metadata(request, store, settings, base, _target(study, series, instance))

    @router.get(instance_path + "/frames/{frames}")
    async def retrieve_frames(
        request: Request, study: str, series: str, instance: str, frames: str, store: StoreDep
    ) -> Response:
        """Pixel data of some frames."""
        return await _frames(request, store, _target(study, series, instance), frames)

    @router.get(instance_path + "/bulkdata/{path:path}")
    async def retrieve_bulkdata(
        request: Request, study: str, series: str, instance: str, path: str, store: StoreDep
    ) -> Response:
        """One bulk data value named by a BulkDataURI."""
        return await _bulk(request, store, _target(study, series, instance), path)

    @router.get(instance_path + "/rendered")
    async def rendered_instance(
        request: Request, study: str, series: str, instance: str, store: StoreDep, settings: SettingsDep
    ) -> Response:
        """The instance (its first frame) rendered as JPEG or PNG."""
        return await _rendered(request, store, settings, _target(study, series, instance), None)

    @router.get(instance_path + "/frames/{frames}/rendered")
    async def rendered_frame(
        request: Request, study: str, series: str, instance: str, frames: str, store: StoreDep, settings: SettingsDep
    ) -> Response:
        """A frame rendered as JPEG or PNG."""
        return await _rendered(request, store, settings, _target(study, series, instance), frames)

    @router.get(instance_path + "/thumbnail")
    async def instance_thumbnail(
        request: Request, study: str, series: str, instance: str, store: StoreDep, settings: SettingsDep
    ) -> Response:
        """A small rendering of the instance."""
        return await _rendered(request, store, settings, _target(study, series, instance), None, thumbnail=True)

    @router.get(instance_path + "/frames/{frames}/thumbnail")
    async def frame_thumbnail(
        request: Request, study: str, series: str, instance: str, frames: str, store: StoreDep, settings: SettingsDep
    ) -> Response:
        """A small rendering of a frame."""
        return await _rendered(request, store, settings, _target(study, series, instance), frames, thumbnail=True)

    @router.get("/studies/{study}/thumbnail")
    async def study_thumbnail(request: Request, study: str, store: StoreDep, settings: SettingsDep) -> Response:
        """A small rendering of a representative image of the study."""
        return await _representative_thumbnail(request, store, settings, _target(study))

    @router.get("/studies/{study}/series/{series}/thumbnail")
    async def series_thumbnail(
        request: Request, study: str, series: str, store: StoreDep, settings: SettingsDep
    ) -> Response:
        """A small rendering of a representative image of the series."""
        return await _representative_thumbnail(request, store, settings, _target(study, series))

    return router
