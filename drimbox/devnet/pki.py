"""A local test certificate authority for the devnet (node-to-node mutual TLS, signing keys).

Everything is written as PEM files in one directory: ``ca.pem`` / ``ca.key`` for the CA, then
``{name}.pem`` / ``{name}.key`` per issued certificate. Keys are EC P-256 (small, fast, accepted by
every TLS stack we use) and private key files are created mode 0600. This CA is for tests and the
demo only: its key sits unencrypted next to its certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["IssuedCert", "SigningKey", "TestCA"]

_CA_CERT = "ca.pem"
_CA_KEY = "ca.key"
# Back-dated so that a clock a little behind on another process does not reject fresh certificates.
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """Paths of an issued certificate (PEM, leaf only) and its private key (PEM, PKCS#8)."""

    cert_path: Path
    key_path: Path


@dataclass(frozen=True, slots=True)
class SigningKey:
    """Paths of a bare key pair (no certificate): private PEM and public (SubjectPublicKeyInfo) PEM."""

    key_path: Path
    public_key_path: Path


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 from the start (not chmod afterwards): no window where the key is readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _san(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


class TestCA:
    """A self-signed CA that issues TLS certificates and signing keys into its directory."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.directory = directory
        self.cert = cert
        self._key = key

    @property
    def cert_path(self) -> Path:
        """The CA certificate (trust anchor to give to TLS clients and servers)."""
        return self.directory / _CA_CERT

    @property
    def key_path(self) -> Path:
        """The CA private key."""
        return self.directory / _CA_KEY

    @classmethod
    def create(cls, directory: Path, *, name: str = "drimbox devnet test CA", days: int = 3650) -> Self:
        """Create a new CA in ``directory`` (created if needed; an existing CA there is replaced)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )  # fmt: skip
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(directory / _CA_KEY, key)
        _write_public(directory / _CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Load a CA created earlier by :meth:`create` in ``directory``."""
        directory = Path(directory)
        cert = x509.load_pem_x509_certificate((directory / _CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / _CA_KEY).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{directory / _CA_KEY}: expected an EC private key")
        return cls(directory, cert, key)

    def issue(
        self,
        name: str,
        *,
        hosts: list[str] | None = None,
        client: bool = True,
        server: bool = True,
        days: int = 825,
    ) -> IssuedCert:
        """Issue a leaf certificate ``{name}.pem`` with key ``{name}.key``.

        ``hosts`` (IP addresses and DNS names) become subjectAltName entries, which is what TLS
        clients check (the CN is ignored by modern stacks). ``client`` / ``server`` set the
        extended key usages; a node needs both (it serves its network face and calls its peers).
        """
        if not (client or server):
            raise ValueError("a certificate must be usable as client, server or both")
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )  # fmt: skip
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        issued = IssuedCert(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        _write_private(issued.key_path, key)
        _write_public(issued.cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return issued

    def issue_signing_key(self, name: str) -> SigningKey:
        """Create a bare EC P-256 key pair ``{name}.key`` / ``{name}.pub.pem`` (e.g. to sign dev tokens)."""
        key = ec.generate_private_key(ec.SECP256R1())
        result = SigningKey(self.directory / f"{name}.key", self.directory / f"{name}.pub.pem")
        _write_private(result.key_path, key)
        _write_public(
            result.public_key_path,
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
        return result
