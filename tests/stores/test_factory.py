"""``[dicomweb]`` settings: which backend, where the cache and spool live, and the exported API."""

from __future__ import annotations

from pathlib import Path

import pytest

import drimbox.stores
from dicomweb_gateway import CachingStore
from drimbox.config import NodeSettings, load_settings
from drimbox.errors import ConfigError
from drimbox.stores import DimseStore, OrthancStore, backend_kind, build_dicomweb


def _settings(tmp_path: Path, **dicomweb: object) -> NodeSettings:
    pacs = {"aet": "PACS", "host": "127.0.0.1", "port": 4242}
    rest = dicomweb.pop("rest_url", None)
    if rest is not None:
        pacs["rest_url"] = rest
    return load_settings(None, pacs=pacs, storage={"data_dir": str(tmp_path)}, dicomweb=dicomweb)


@pytest.mark.parametrize(
    ("choice", "rest_url", "expected"),
    [
        ("auto", None, "dimse"),
        ("auto", "http://127.0.0.1:8042", "orthanc"),
        ("dimse", "http://127.0.0.1:8042", "dimse"),
        ("orthanc", "http://127.0.0.1:8042", "orthanc"),
    ],
)
def test_backend_choice(tmp_path: Path, choice: str, rest_url: str | None, expected: str) -> None:
    settings = _settings(tmp_path, backend=choice, rest_url=rest_url)
    assert backend_kind(settings) == expected
    service = build_dicomweb(settings)
    try:
        assert isinstance(service.store, CachingStore)
        assert isinstance(service.upstream, OrthancStore if expected == "orthanc" else DimseStore)
        assert service.cache.root == tmp_path / "dicomweb-cache"
        assert service.spool.root == tmp_path / "dicomweb-spool"
        assert service.site_settings.spool_dir == service.spool.stow_dir
    finally:
        service.close()


def test_orthanc_without_rest_url_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        backend_kind(_settings(tmp_path, backend="orthanc"))
    assert info.value.key == "dicomweb.backend"


@pytest.mark.parametrize(("key", "value"), [("backend", "wado"), ("max_results", 5000), ("cache_max_bytes", -1)])
def test_invalid_dicomweb_settings_name_the_key(tmp_path: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, **{key: value})
    assert info.value.key == f"dicomweb.{key}"


def test_one_process_at_a_time_on_a_cache(tmp_path: Path) -> None:
    first = build_dicomweb(_settings(tmp_path))
    try:
        with pytest.raises(ConfigError) as info:
            build_dicomweb(_settings(tmp_path))
        assert info.value.key == "dicomweb.cache_dir" and "in use" in str(info.value)
    finally:
        first.close()
    build_dicomweb(_settings(tmp_path)).close()  # released with the first


def test_limits_reach_the_gateway(tmp_path: Path) -> None:
    settings = _settings(tmp_path, max_results=200, max_stow_bytes=1000, retry_after_s=9,
                         public_url="https://pacs.example/dicom-web")  # fmt: skip
    service = build_dicomweb(settings)
    try:
        site = service.site_settings
        assert (site.max_results, site.max_stow_bytes, site.retry_after_s) == (200, 1000, 9)
        assert site.public_base_url == "https://pacs.example/dicom-web"
    finally:
        service.close()


def test_exports_are_sorted_and_exist() -> None:
    names = drimbox.stores.__all__
    assert names == sorted(names)
    assert all(hasattr(drimbox.stores, name) for name in names)
