"""docker-compose.yml and the Dockerfile, checked against the project (no container engine on the build machines).

- the file is valid against the compose specification's JSON schema (``compose_spec.json``, as shipped by
  docker-compose 1.29.2, Apache-2.0);
- every drimbox service's command line (Dockerfile ENTRYPOINT + ``command``) is parsed by the project's
  own typer app: each sub-command and option exists and its value is accepted;
- the files each command and each node's settings name are mounted, and those under ``deploy/pki``
  are exactly what the documented ``drimbox pki test-ca --out deploy/pki`` writes;
- host ports are unique and each published container port is one the service listens on;
- each node's outbox, audit store and cache lie on its own named (writable) volumes;
- the topology is ``drimbox demo``'s: one registry, and per demo site a node with the same AE titles
  and an Orthanc of the official image with the DICOMweb plugin, reachable from its node only.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema_rs
import pytest
import typer.main
import yaml
from cryptography import x509
from typer.testing import CliRunner

from drimbox.cli import app
from drimbox.config import NodeSettings, load_settings
from drimbox.devnet.network import DemoNetwork
from drimbox.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA = Path(__file__).with_name("compose_spec.json")
ORTHANC_IMAGE = re.compile(r"(orthancteam/orthanc|jodogne/orthanc-plugins):[0-9][0-9.]*")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the documented command writes (run here through the project's own CLI)."""
    out = tmp_path_factory.mktemp("deploy") / "pki"
    result = CliRunner().invoke(app, ["pki", "test-ca", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def drimbox_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("build") == "."}


def entrypoint() -> list[str]:
    line = next(x for x in DOCKERFILE.read_text().splitlines() if x.startswith("ENTRYPOINT"))
    parsed: list[str] = json.loads(line.removeprefix("ENTRYPOINT"))
    return parsed


@dataclass(frozen=True)
class Mount:
    source: str
    target: PurePosixPath
    read_only: bool

    @property
    def named(self) -> bool:
        return not self.source.startswith(("./", "/", "../"))


def mounts(service: dict[str, Any]) -> list[Mount]:
    found = []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        found.append(Mount(source, PurePosixPath(target), mode == ["ro"]))
    return found


def host_path(service: dict[str, Any], container_path: str, pki: Path) -> Path:
    """Where a path seen inside the container comes from: a bind mount (``./deploy/pki`` → the test CA's output)."""
    path = PurePosixPath(container_path)
    for mount in sorted(mounts(service), key=lambda m: len(m.target.parts), reverse=True):
        if mount.named or not (path == mount.target or mount.target in path.parents):
            continue
        source = pki if mount.source == "./deploy/pki" else ROOT / mount.source
        return source.joinpath(*path.relative_to(mount.target).parts)
    raise AssertionError(f"{container_path} is not on any bind mount of the service")


def on_named_volume(service: dict[str, Any], container_path: Path) -> str:
    path = PurePosixPath(container_path)
    for mount in mounts(service):
        if mount.named and not mount.read_only and (path == mount.target or mount.target in path.parents):
            return mount.source
    raise AssertionError(f"{container_path} is on no writable named volume")


def node_settings(service: dict[str, Any], pki: Path) -> NodeSettings:
    config = service["command"][service["command"].index("--config") + 1]
    return load_settings(host_path(service, config, pki))


def command_line(service: dict[str, Any]) -> tuple[Any, list[str], list[str]]:
    """The (click) command a service runs, its arguments, and the sub-command path."""
    argv = [*entrypoint(), *service["command"]]
    assert argv[0] == "drimbox"
    command: Any = typer.main.get_command(app)  # typer's own click: groups are told by list_commands
    path, args = [], argv[1:]
    while hasattr(command, "list_commands"):
        name = args.pop(0)
        found = command.get_command(command.context_class(command), name)
        assert found is not None, f"drimbox {' '.join(path)} has no sub-command {name!r}"
        command, path = found, [*path, name]
    return command, args, path


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_every_command_and_option_exists_in_the_cli(compose: dict[str, Any]) -> None:
    services = drimbox_services(compose)
    assert set(services) == {"registry", "node-a", "node-b"}
    for name, service in services.items():
        command, args, path = command_line(service)
        assert path == (["registry", "serve"] if name == "registry" else ["serve"])
        context = command.make_context(f"drimbox {' '.join(path)}", list(args))  # raises on any unknown option
        assert not context.args, f"{name}: unexpected arguments {context.args}"


def registry_options(compose: dict[str, Any]) -> dict[str, Any]:
    command, args, path = command_line(compose["services"]["registry"])
    return dict(command.make_context("drimbox registry serve", list(args)).params)


def test_the_files_named_are_mounted_and_come_from_the_test_ca(compose: dict[str, Any], test_pki: Path) -> None:
    registry = compose["services"]["registry"]
    options = registry_options(compose)
    secrets = {f"/run/secrets/{name}" for name in registry["secrets"]}
    assert str(options["database_url_file"]) in secrets
    for key in ("trusted_ca_file", "token_public_key_file", "whitelist_nodes", "whitelist_cert", "whitelist_key"):
        assert host_path(registry, str(options[key]), test_pki).is_file(), key
    for name in ("node-a", "node-b"):
        service = compose["services"][name]
        settings = node_settings(service, test_pki)
        files = [settings.tls.ca_file, settings.tls.cert_file, settings.tls.key_file, settings.auth.public_key_file,
                 *settings.trust_list.ca_files]
        for file in files:
            assert file is not None and host_path(service, str(file), test_pki).is_file(), file
        # The node's certificate names the service its peers call it by (mutual TLS on the drimm network).
        certificate = x509.load_pem_x509_certificate(host_path(service, str(settings.tls.cert_file), test_pki)
                                                     .read_bytes())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert name in names.get_values_for_type(x509.DNSName)
        assert settings.http.public_network_url == f"https://{name}:{settings.http.network_port}"
        assert settings.auth.issuer == options["token_issuer"] and settings.auth.audience == options["token_audience"]
    # The trust list the registry signs names both nodes by the host their RetrieveURLs use.
    listed = tomllib.loads(host_path(registry, str(options["whitelist_nodes"]), test_pki).read_text())["nodes"]
    assert sorted(n["db"] for n in listed) == ["node-a", "node-b"]
    secret_files = {name: compose["secrets"][name]["file"] for name in compose["secrets"]}
    assert set(secret_files.values()) == {"./deploy/secrets/registry-db-password",
                                          "./deploy/secrets/registry-database-url"}
    assert "registry-database-url" in (ROOT / "deploy" / "make-secrets.sh").read_text()


def listening_ports(name: str, service: dict[str, Any], compose: dict[str, Any], pki: Path) -> set[int]:
    if name == "registry":
        return {int(registry_options(compose)["port"])}
    if service.get("build") == ".":
        settings = node_settings(service, pki)
        return {settings.http.port, settings.http.network_port, settings.hl7.port, settings.local.port}
    return set()


def test_ports_do_not_collide_and_lead_to_listeners(compose: dict[str, Any], test_pki: Path) -> None:
    host_ports: list[int] = []
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            host, container = (int(p) for p in mapping.split(":"))
            host_ports.append(host)
            assert container in listening_ports(name, service, compose, test_pki), f"{name}: {mapping}"
        for probe in service.get("healthcheck", {}).get("test", [])[-1:]:
            for port in re.findall(r"127\.0\.0\.1:([0-9]+)/", probe):
                assert int(port) in listening_ports(name, service, compose, test_pki), f"{name}: {probe}"
    assert len(host_ports) == len(set(host_ports)) >= 7


def test_each_node_keeps_outbox_audit_and_cache_on_its_own_volumes(compose: dict[str, Any], test_pki: Path) -> None:
    used: dict[str, str] = {}
    for name in ("node-a", "node-b"):
        service = compose["services"][name]
        settings = node_settings(service, test_pki)
        data = settings.storage.data_dir
        paths = {
            "outbox": settings.publish.outbox_path or data / "outbox.sqlite3",
            "audit": data / "audit.sqlite",
            "cache": settings.dicomweb.cache_dir or data / "dicomweb-cache",
            "spool": settings.dicomweb.spool_dir or data / "dicomweb-spool",
            "trust list copy": settings.trust_list.file or data,
        }
        for what, path in paths.items():
            volume = on_named_volume(service, path)
            assert used.setdefault(volume, name) == name, f"{volume} shared by {used[volume]} and {name}"
            assert volume.startswith(name), f"{name}'s {what} on {volume}"
    registry = compose["services"]["registry"]
    assert on_named_volume(registry, registry_options(compose)["data_dir"]) == "registry-documents"
    declared = set(compose["volumes"])
    named = {m.source for s in compose["services"].values() for m in mounts(s) if m.named}
    assert named == declared
    # Volume mount points of the image exist and belong to its user (a fresh named volume copies them).
    dockerfile = DOCKERFILE.read_text()
    for service in drimbox_services(compose).values():
        for mount in mounts(service):
            if mount.named:
                assert str(mount.target) in dockerfile, mount.target


def test_the_topology_is_the_demos(compose: dict[str, Any], test_pki: Path, tmp_path: Path) -> None:
    demo = DemoNetwork(tmp_path, base_port=40000)  # planned, not started
    services = compose["services"]
    registry_port = registry_options(compose)["port"]
    nodes = {name: s for name, s in drimbox_services(compose).items() if name != "registry"}
    assert len(nodes) == len(demo.sites)
    networks: dict[str, set[str]] = {}
    for name, service in services.items():
        for network in service.get("networks", []):
            networks.setdefault(network, set()).add(name)
    for plan, (name, service) in zip(demo.sites, sorted(nodes.items()), strict=True):
        settings = node_settings(service, test_pki)
        assert (settings.name, settings.local.aet, settings.pacs.aet) == (plan.name, plan.node_aet, plan.pacs_aet)
        assert settings.registry.base_url == f"http://registry:{registry_port}"
        pacs = services[settings.pacs.host]
        assert ORTHANC_IMAGE.fullmatch(pacs["image"])
        environment = pacs["environment"]
        assert environment["DICOM_WEB_PLUGIN_ENABLED"] == "true"
        assert environment["ORTHANC__DICOM_AET"] == settings.pacs.aet
        assert json.loads(environment["ORTHANC__DICOM_MODALITIES"]) == {
            "drimbox": [settings.local.aet, name, settings.local.port]
        }
        assert settings.pacs.port == 4242 and settings.pacs.rest_url == f"http://{settings.pacs.host}:8042"
        (site_network,) = set(pacs["networks"])
        assert networks[site_network] == {settings.pacs.host, name}  # the PACS is reachable from its node only
        assert set(service["depends_on"]) == {"registry", settings.pacs.host}
    assert networks["drimm"] == {"registry", *nodes}
    assert networks["registry-db"] == {"registry", "postgres"}
    assert services["postgres"]["image"].startswith("postgres:15")


def _dockerfile_instructions() -> Iterator[tuple[str, str]]:
    for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            yield keyword, rest


def test_the_image_installs_this_project_with_its_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert entrypoint() == ["drimbox"]
    module, _, function = project["project"]["scripts"]["drimbox"].partition(":")
    assert (module, function) == ("drimbox.cli", "main")
    copied = {
        source
        for keyword, rest in _dockerfile_instructions()
        if keyword == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]
    }
    packages = {include.rstrip("*") for include in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied
    runs = " ".join(rest for keyword, rest in _dockerfile_instructions() if keyword == "RUN")
    assert "pip wheel --no-cache-dir --no-binary lxml,xmlsec --wheel-dir /wheels ." in runs
    assert f"--find-links /wheels {project['project']['name']}" in runs


def test_the_test_ca_command_names_a_bad_node_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pki", "test-ca", "--out", str(tmp_path), "--node", "site-c"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "--node: expected SITE=HOST, got site-c"
    assert not (tmp_path / "ca.pem").exists()


def test_the_test_ca_command_takes_other_nodes(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pki", "test-ca", "--out", str(tmp_path), "--node", "site-c=node-c"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("site-*")) == ["site-c.key", "site-c.pem"]
    assert (tmp_path / "site-c.key").stat().st_mode & 0o777 == 0o600
    listed = tomllib.loads((tmp_path / "trustlist" / "trustlist-nodes.toml").read_text())["nodes"]
    assert [n["db"] for n in listed] == ["node-c"]
