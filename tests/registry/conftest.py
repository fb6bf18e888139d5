"""Registry fixtures: a test PKI, a throwaway PostgreSQL, and the registry app on SQLite and on PostgreSQL.

Every registry test that takes ``registry`` runs twice, once per database backend. The apps are
session-wide; tests stay independent by using fresh patients (random INS) and fresh uniqueIds.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# pytest puts tests/ on sys.path (rootdir conftest, "prepend" import mode), where this directory
# would shadow the ``registry`` package as a namespace package: the repository root must come first.
_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
if "registry" in sys.modules and getattr(sys.modules["registry"], "__file__", None) is None:
    for _name in [n for n in sys.modules if n == "registry" or n.startswith("registry.")]:
        del sys.modules[_name]

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from xdsfactory import (  # noqa: E402
    DRIM_M_DATA,
    XDS_SAMPLE,
    Built,
    Reply,
    Submission,
    TestPki,
    parse_reply,
    provide_and_register,
)

from registry import RegistrySettings, create_app  # noqa: E402
from registry.context import RegistryContext  # noqa: E402
from registry.devdb import ThrowawayPostgres  # noqa: E402

TOKEN_ISSUER = "https://idp.test.drim-m"
TOKEN_AUDIENCE = "registry"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """Test CA, organisation signer (trusted), rogue signer (untrusted), token issuer key."""
    assert XDS_SAMPLE.is_file(), f"the ANS samples are expected in {DRIM_M_DATA}"
    return TestPki.create(tmp_path_factory.mktemp("registry-pki"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL 15 server of our own on a free loopback port (started as user postgres)."""
    server = ThrowawayPostgres().start()
    yield server
    server.stop()


def registry_settings(tmp: Path, pki: TestPki, database_url: str | None, **overrides: object) -> RegistrySettings:
    """Settings of a test registry in ``tmp``."""
    values: dict[str, object] = {
        "data_dir": tmp,
        "database_url": database_url,
        "trusted_ca_file": pki.ca_file,
        "token_issuer": TOKEN_ISSUER,
        "token_audience": TOKEN_AUDIENCE,
        "token_public_key_file": pki.token_public_key_file,
        **overrides,
    }
    return RegistrySettings(**values)  # type: ignore[arg-type]


@dataclass
class RegistryUnderTest:
    """A running registry app, its context (database, blob store) and a client."""

    backend: str
    client: TestClient
    context: RegistryContext
    pki: TestPki

    @property
    def repository_id(self) -> str:
        return self.context.settings.repository_unique_id

    def post(self, path: str, built: Built) -> Reply:
        """POST a SOAP request; parse the reply."""
        response = self.client.post(path, content=built.body, headers={"Content-Type": built.content_type})
        return parse_reply(response.status_code, response.headers.get("content-type", ""), response.content)

    def publish(self, sub: Submission, **options: object) -> Reply:
        """ITI-41 for ``sub`` (see :func:`xdsfactory.provide_and_register` for options)."""
        return self.post("/xds/repository", provide_and_register(sub, self.pki, **options))  # type: ignore[arg-type]


def start_registry(
    backend: str, tmp: Path, pki: TestPki, database_url: str | None, context: RegistryContext | None = None
) -> Iterator[RegistryUnderTest]:
    """Create the app (migrations run) and yield it with a client."""
    settings = registry_settings(tmp, pki, database_url)
    app = create_app(settings, context=context)
    with TestClient(app) as client:
        yield RegistryUnderTest(backend, client, app.state.registry, pki)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: TestPki
) -> Iterator[RegistryUnderTest]:
    """The registry on SQLite, then on PostgreSQL."""
    backend: str = request.param
    tmp = tmp_path_factory.mktemp(f"registry-{backend}")
    url = None
    if backend == "postgresql":
        url = request.getfixturevalue("postgres").create_database("registry_tests")
    yield from start_registry(backend, tmp, pki, url)
