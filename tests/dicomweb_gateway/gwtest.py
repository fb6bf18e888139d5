"""Helpers shared by the gateway tests (imported by conftest and test modules)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from dicomweb_gateway.multipart import MultipartParser, PartData, PartEnd, PartStart
from dicomweb_gateway.negotiation import parse_accept
from drimbox.devnet.ports import free_port
from drimbox.testdata import GeneratedStudy

__all__ = ["Corpus", "LiveServer", "instance_path", "split_parts"]


@dataclass(frozen=True)
class Corpus:
    """The generated studies, by role."""

    mammo: GeneratedStudy
    prior: GeneratedStudy
    ct: GeneratedStudy
    mr_jpegls: GeneratedStudy
    multiframe: Path

    @property
    def studies(self) -> tuple[GeneratedStudy, ...]:
        """Every study but the multi-frame one."""
        return (self.mammo, self.prior, self.ct, self.mr_jpegls)

    def files(self) -> list[Path]:
        """Every file."""
        return [f for s in self.studies for f in s.files] + [self.multiframe]


class LiveServer:
    """A uvicorn server on 127.0.0.1 in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        """The gateway root."""
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def instance_path(study: GeneratedStudy, index: int = 0) -> str:
    """The gateway path of one generated instance."""
    inst = study.instances[index]
    return (
        f"/dicom-web/studies/{study.study_instance_uid}/series/{inst.series_instance_uid}"
        f"/instances/{inst.sop_instance_uid}"
    )


def split_parts(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Parse a multipart response with the gateway's parser."""
    boundary = parse_accept(content_type)[0].param("boundary")
    assert boundary
    parser = MultipartParser(boundary)
    parts: list[tuple[dict[str, str], bytes]] = []
    headers: dict[str, str] = {}
    data = bytearray()
    for event in parser.feed(body):
        if isinstance(event, PartStart):
            headers, data = dict(event.headers), bytearray()
        elif isinstance(event, PartData):
            data += event.data
        elif isinstance(event, PartEnd):
            parts.append((headers, bytes(data)))
    parser.close()
    return parts
