"""Assembly: every route behind its guard, /healthz open, exported names, Alembic from empty, CLI wiring."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import RegistryUnderTest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from sqlalchemy import inspect
from typer.testing import CliRunner
from xdsfactory import ITI18, NS, parse_reply

import registry as registry_package
from registry.deps import authenticate_bearer, authenticate_soap
from registry.devdb import ThrowawayPostgres
from registry.mhd.router import create_mhd_router
from registry.store.db import Database
from registry.store.migrate import schema_drift, upgrade_to_head
from registry.xds.router import create_xds_router

GUARDS = {authenticate_soap, authenticate_bearer}


def _dependencies(route: APIRoute) -> set[object]:
    found: set[object] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        found.add(dependant.call)
        stack.extend(dependant.dependencies)
    return found


@pytest.mark.parametrize(
    ("make_router", "guard"),
    [(create_xds_router, authenticate_soap), (create_mhd_router, authenticate_bearer)],
    ids=["xds", "mhd"],
)
def test_every_route_of_a_router_has_its_guard(make_router: Callable[[], APIRouter], guard: object) -> None:
    routes = [r for r in make_router().routes if isinstance(r, APIRoute)]
    assert routes
    for route in routes:
        assert guard in _dependencies(route), route.path


def test_only_healthz_is_unguarded(registry: RegistryUnderTest) -> None:
    app = registry.client.app
    unguarded = [r.path for r in app.routes if isinstance(r, APIRoute) and not _dependencies(r) & GUARDS]  # type: ignore[attr-defined]
    assert unguarded == ["/healthz"]
    assert set(app.openapi()["paths"]) == {  # type: ignore[attr-defined]
        "/xds/registry",
        "/xds/repository",
        "/fhir/DocumentReference",
        "/fhir/DocumentReference/{resource_id}",
        "/fhir/Binary/{resource_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    }


def test_every_operation_refuses_an_anonymous_caller(registry: RegistryUnderTest) -> None:
    app = registry.client.app
    envelope = (
        f"<s:Envelope xmlns:s='{NS['soap']}' xmlns:wsa='{NS['wsa']}'><s:Header><wsa:Action>{{action}}"
        f"</wsa:Action></s:Header><s:Body><x xmlns='urn:test'/></s:Body></s:Envelope>"
    )
    actions = {"/xds/registry": ITI18, "/xds/repository": "urn:ihe:iti:2007:RetrieveDocumentSet"}
    for path, operations in app.openapi()["paths"].items():  # type: ignore[attr-defined]
        concrete = path.replace("{resource_id}", "00000000-0000-4000-8000-000000000000")
        for method in operations:
            if path == "/healthz":
                assert registry.client.get(path).json()["status"] == "ok"
            elif path in ("/readyz", "/metrics"):  # operations: no patient data (tests/registry/test_registry_ops.py)
                assert registry.client.get(path).status_code == 200
            elif path.startswith("/xds/"):
                response = registry.client.post(
                    concrete,
                    content=envelope.replace("{action}", actions[path]),
                    headers={"Content-Type": "application/soap+xml"},
                )
                reply = parse_reply(response.status_code, response.headers["content-type"], response.content)
                assert (response.status_code, reply.fault and reply.fault[1]) == (400, "wsse:InvalidSecurity")
            else:
                assert registry.client.request(method.upper(), concrete).status_code == 401, path


def test_no_documentation_endpoints(registry: RegistryUnderTest) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert registry.client.get(path).status_code == 404


def test_exports_are_sorted_and_complete() -> None:
    assert registry_package.__all__ == sorted(registry_package.__all__)
    assert all(hasattr(registry_package, name) for name in registry_package.__all__)


def _assert_migrated(database: Database) -> None:
    upgrade_to_head(database.engine)  # twice: idempotent
    with database.engine.connect() as connection:
        assert schema_drift(connection) == []
        tables = set(inspect(connection).get_table_names())
    assert tables >= {
        "alembic_version",
        "patients",
        "submission_sets",
        "document_entries",
        "document_codes",
        "reference_ids",
        "associations",
        "document_locator",
    }


def test_alembic_upgrade_from_empty_sqlite(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    upgrade_to_head(database.engine)
    _assert_migrated(database)
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    database.dispose()


def test_alembic_upgrade_from_empty_postgresql(postgres: ThrowawayPostgres) -> None:
    database = Database.from_url(postgres.create_database("migration_from_empty"))
    upgrade_to_head(database.engine)
    _assert_migrated(database)
    database.dispose()


def test_cli_serve_offers_the_security_options() -> None:
    from drimbox.cli import app

    result = CliRunner().invoke(app, ["registry", "serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in (
        "--trusted-ca-file",
        "--token-issuer",
        "--token-audience",
        "--token-public-key-file",
        "--database-url",
        "--data-dir",
    ):
        assert option in result.output


def test_registry_imports_neither_the_node_nor_the_gateway() -> None:
    """The registry is a separate national service: the node talks to it over XDS.b only (DESIGN §4)."""
    package = Path(registry_package.__file__).parent
    for source in package.rglob("*.py"):
        for line in source.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] not in ("drimbox", "dicomweb_gateway"), f"{source}: {line}"
