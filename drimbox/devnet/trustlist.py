"""The demo network's signed trust list (F11): the files the registry signs ``/whitelist`` with.

The demo CA issues a signing certificate named like the ANS one (CN ``Liste Blanche DRIM-M DEVNET``,
OU ``DEVNET``: nodes check both, as they do for the ANS signer); the registry gets the nodes file, the
signer certificate followed by the CA certificate, and the key (``drimbox registry serve
--whitelist-nodes/--whitelist-cert/--whitelist-key``); the nodes get the ``[trust_list]`` table of
:meth:`TrustListFiles.node_settings` (the demo CA as ``ca_files``, the signer's CN and OU).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from drimbox.devnet.pki import TestCA
from registry.trustlist import ListedNode

__all__ = ["SIGNER_CN", "SIGNER_OU", "TrustListFiles", "write_trust_list_files"]

SIGNER_CN = "Liste Blanche DRIM-M DEVNET"
SIGNER_OU = "DEVNET"


@dataclass(frozen=True, slots=True)
class TrustListFiles:
    """What the registry needs to sign the list, and the name nodes require of its signer."""

    nodes_file: Path
    cert_file: Path
    """Signer certificate, then the CA certificate (PEM)."""
    key_file: Path
    ca_file: Path
    signer_cn: str
    signer_ou: str

    def registry_args(self) -> list[str]:
        """Options of ``drimbox registry serve`` that publish the list at ``/whitelist``."""
        return ["--whitelist-nodes", str(self.nodes_file), "--whitelist-cert", str(self.cert_file),
                "--whitelist-key", str(self.key_file)]

    def node_settings(self, url: str, *, refresh_s: float = 86400.0) -> dict[str, Any]:
        """The ``[trust_list]`` table of a node that fetches the list from ``url``."""
        return {"url": url, "refresh_s": refresh_s, "ca_files": [str(self.ca_file)], "signer_cn": self.signer_cn,
                "signer_ou": self.signer_ou}


def _issue_signer(ca: TestCA, directory: Path, name: str, days: int) -> tuple[Path, Path]:
    """A signing certificate (CN/OU, key usages digitalSignature + nonRepudiation) and its key, 0600."""
    ca_key = serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca.key_path}: expected an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    usage = x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SIGNER_CN),
                                 x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, SIGNER_OU)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_path = directory / f"{name}.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    chain = directory / f"{name}-chain.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca.cert_path.read_bytes())
    return chain, key_path


def write_trust_list_files(ca: TestCA, directory: Path, nodes: Sequence[ListedNode], *,
                           name: str = "trustlist-signer", days: int = 825) -> TrustListFiles:
    """Issue the signer into ``directory`` (``{name}-chain.pem``, ``{name}.key``) and write the nodes file."""
    directory.mkdir(parents=True, exist_ok=True)
    chain, key_path = _issue_signer(ca, directory, name, days)
    now = datetime.now(UTC).replace(microsecond=0)
    tables = [
        {
            "identifiant": node.identifiant,
            "db": node.db,
            "vi": node.vi,
            "denomination": node.denomination,
            "dn_certificat_operateur": node.dn_certificat_operateur,
            "support_contact": node.support_contact,
            "date_maj": node.date_maj or now,
        }
        for node in nodes
    ]
    nodes_file = directory / "trustlist-nodes.toml"
    nodes_file.write_text(tomli_w.dumps({"nodes": tables}))
    return TrustListFiles(nodes_file=nodes_file, cert_file=chain, key_file=key_path, ca_file=ca.cert_path,
                          signer_cn=SIGNER_CN, signer_ou=SIGNER_OU)
