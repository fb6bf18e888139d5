"""The target of a certification run: its addresses, credentials and declared profiles.

Built from the ``drimbox demo`` contract (``endpoints.json``, DESIGN §5) or from explicit options,
so the kit works against any vendor's node: everything it knows of the target is here, and it
reaches the target only over the wire.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from drimbox.certify.model import Profile
from drimbox.errors import ConfigError

__all__ = ["DimseAddress", "HostPort", "Target", "TokenSource", "parse_dimse", "parse_host_port",
           "target_from_endpoints"]


@dataclass(frozen=True, slots=True)
class DimseAddress:
    aet: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_host_port(text: str, option: str) -> HostPort:
    """``host:port`` → :class:`HostPort` (a clear error naming the option otherwise)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{option}: expected host:port, got {text!r}", key=option)
    return HostPort(host, int(port))


def parse_dimse(text: str, option: str) -> DimseAddress:
    """``AET@host:port`` → :class:`DimseAddress`."""
    aet, sep, rest = text.partition("@")
    if not sep or not aet or len(aet) > 16:
        raise ConfigError(f"{option}: expected AET@host:port, got {text!r}", key=option)
    where = parse_host_port(rest, option)
    return DimseAddress(aet, where.host, where.port)


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where the practitioner's bearer token comes from: a literal or a command printing it."""

    token: str | None = None
    command: tuple[str, ...] = ()

    def fetch(self) -> str | None:
        """The token (the command runs once per call); ``None`` when no source is configured."""
        if self.token:
            return self.token
        if not self.command:
            return None
        done = subprocess.run(list(self.command), capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0 or not done.stdout.strip():
            raise ConfigError(f"token command {shlex.join(self.command)} failed: {done.stderr.strip()[-300:]}",
                              key="token_command")
        return done.stdout.strip().splitlines()[-1]


@dataclass(frozen=True, slots=True)
class Target:
    """Everything the kit knows of the node (and the registry) under test."""

    name: str
    profiles: frozenset[Profile]
    dicomweb: str | None = None
    """Site-facing DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
    network_dicomweb: str | None = None
    """Network-facing DICOMweb root (mutual TLS; what RetrieveURLs point to)."""
    base_url: str | None = None
    """The node's site face (consumer API: contextual call, XDM export)."""
    registry_fhir: str | None = None
    registry_xds: str | None = None
    repository_xds: str | None = None
    whitelist: str | None = None
    pacs: DimseAddress | None = None
    """Where the kit C-STOREs the study it produces (the node's PACS, or any AE that lands images there)."""
    dimse: DimseAddress | None = None
    """The node's own DIMSE SCP."""
    hl7: HostPort | None = None
    """The node's MLLP listener (reports in, F1)."""
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    local_address: str | None = None
    """Source address of the kit's connections to the network face (the trust list lists hosts)."""
    stranger_address: str | None = None
    """A loopback address that is *not* on the trust list (the kit connects from it to be refused)."""
    tokens: TokenSource = field(default_factory=TokenSource)
    consumer_tokens: TokenSource = field(default_factory=TokenSource)
    """A token of a user of the consumer's portal, issued to the consumer's own client (its network calls
    present it to the source, which binds tokens to the presenting node); default: ``tokens``."""
    audit_command: tuple[str, ...] = ()
    """A command printing the node's audit trail as a FHIR Bundle of AuditEvents (``{since}`` substituted)."""
    trust_list_feed: HostPort | None = None
    """Where the kit serves trust lists for the node to fetch (the node's trust-list URL points here)."""
    trust_list_wait_s: float = 30.0

    def declares(self, *profiles: Profile) -> bool:
        return bool(self.profiles & set(profiles))

    def with_profiles(self, profiles: frozenset[Profile]) -> Target:
        return replace(self, profiles=profiles)


def _node(endpoints: dict[str, Any], name: str | None) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = endpoints.get("nodes", [])
    if not nodes:
        raise ConfigError("endpoints.json lists no node", key="nodes")
    if name is None:
        return nodes[0]
    for node in nodes:
        if node.get("name") == name:
            return node
    raise ConfigError(f"endpoints.json has no node {name!r} (nodes: {', '.join(n['name'] for n in nodes)})",
                      key="site")


def target_from_endpoints(path: Path, *, site: str | None, profiles: frozenset[Profile]) -> Target:
    """The target described by a ``drimbox demo`` ``endpoints.json`` (one of its nodes, its registry)."""
    try:
        endpoints = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read endpoints ({exc})", key="endpoints") from exc
    node = _node(endpoints, site)
    registry = endpoints.get("registry", {})
    tls = endpoints.get("tls", {})
    dimse = node.get("dimse")
    hl7 = node.get("hl7")
    token_command = tuple(endpoints.get("token_command", ()))
    audit_command: tuple[str, ...] = ()
    if token_command and node.get("config"):
        # The demo's nodes are drimbox nodes: their audit trail is exported by the same command line.
        audit_command = (token_command[0], "audit", "export", "--config", str(node["config"]), "--since", "{since}")
    return Target(
        name=str(node.get("name", "node")),
        profiles=profiles,
        dicomweb=node.get("dicomweb"),
        network_dicomweb=node.get("network_dicomweb"),
        base_url=node.get("base_url"),
        registry_fhir=registry.get("fhir"),
        registry_xds=registry.get("xds_registry"),
        repository_xds=registry.get("xds_repository"),
        whitelist=registry.get("whitelist"),
        # The demo's PACS takes C-STOREs only from its node: the kit stores its study through the node (STOW-RS).
        pacs=None,
        dimse=DimseAddress(dimse["aet"], dimse["host"], int(dimse["port"])) if dimse else None,
        hl7=HostPort(hl7["host"], int(hl7["port"])) if hl7 else None,
        ca_file=Path(tls["ca"]) if tls.get("ca") else None,
        client_cert=Path(tls["client_cert"]) if tls.get("client_cert") else None,
        client_key=Path(tls["client_key"]) if tls.get("client_key") else None,
        local_address="127.0.0.1",  # the contract's test tool is listed at 127.0.0.1
        stranger_address="127.0.0.9",
        tokens=TokenSource(command=token_command),
        # A user of this node's portal logs in through the node's own OIDC client (the demo's: the site name).
        consumer_tokens=TokenSource(command=(*token_command, "--client", str(node["name"])) if token_command else ()),
        audit_command=audit_command,
    )
