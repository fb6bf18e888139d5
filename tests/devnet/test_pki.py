"""The devnet's test CA: chains, SANs, file modes, and real mutual-TLS handshakes on loopback."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from drimbox.devnet.pki import IssuedCert, TestCA


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_files_and_modes(test_ca: TestCA) -> None:
    assert test_ca.cert_path.name == "ca.pem" and test_ca.key_path.name == "ca.key"
    assert stat.S_IMODE(test_ca.key_path.stat().st_mode) == 0o600
    ca = _cert(test_ca.cert_path)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.verify_directly_issued_by(ca)  # self-signed


def test_issue_chains_to_ca_with_sans(test_ca: TestCA) -> None:
    issued = test_ca.issue("site-a", hosts=["127.0.0.2", "site-a.localhost", "localhost"])
    assert issued.cert_path == test_ca.directory / "site-a.pem"
    assert issued.key_path == test_ca.directory / "site-a.key"
    assert stat.S_IMODE(issued.key_path.stat().st_mode) == 0o600
    cert = _cert(issued.cert_path)
    cert.verify_directly_issued_by(_cert(test_ca.cert_path))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.2")]
    assert san.get_values_for_type(x509.DNSName) == ["site-a.localhost", "localhost"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(issued.key_path.read_bytes(), password=None)
    public = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(public, ec.EllipticCurvePublicKey)
    assert key.public_key().public_numbers() == public.public_numbers()


def test_client_only_certificate(test_ca: TestCA) -> None:
    cert = _cert(test_ca.issue("tool", hosts=["127.0.0.1"], server=False).cert_path)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    with pytest.raises(ValueError):
        test_ca.issue("nothing", client=False, server=False)


def test_load_round_trip(test_ca: TestCA) -> None:
    loaded = TestCA.load(test_ca.directory)
    assert loaded.cert == test_ca.cert
    issued = loaded.issue("later", hosts=["127.0.0.9"])
    _cert(issued.cert_path).verify_directly_issued_by(test_ca.cert)


def test_signing_key(test_ca: TestCA) -> None:
    pair = test_ca.issue_signing_key("idp")
    assert pair.key_path.name == "idp.key" and pair.public_key_path.name == "idp.pub.pem"
    assert stat.S_IMODE(pair.key_path.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(pair.key_path.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pair.public_key_path.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(public, ec.EllipticCurvePublicKey)
    assert private.public_key().public_numbers() == public.public_numbers()


def _server_context(ca: TestCA, cert: IssuedCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert.cert_path, cert.key_path)
    context.load_verify_locations(ca.cert_path)
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the client must present a certificate
    return context


def _client_context(ca: TestCA, cert: IssuedCert) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    context.load_cert_chain(cert.cert_path, cert.key_path)
    return context


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, host: str) -> tuple[str | None, str | None]:
    """One TLS handshake on ``host``; returns (client error, server error), None meaning success."""
    listener = socket.create_server((host, 0))
    port = listener.getsockname()[1]
    server_error: list[str | None] = [None]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                peer = tls.getpeercert()
                assert peer is not None
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            server_error[0] = str(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_error: str | None = None
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=host) as tls:
                if tls.recv(2) != b"ok":
                    client_error = "no data"
    except (ssl.SSLError, OSError) as exc:
        client_error = str(exc)
    thread.join(5)
    listener.close()
    return client_error, server_error[0]


def test_mutual_tls_handshake_on_loopback(test_ca: TestCA) -> None:
    server = test_ca.issue("tls-server", hosts=["127.0.0.2", "localhost"])
    client = test_ca.issue("tls-client", hosts=["127.0.0.3"])
    assert _handshake(_server_context(test_ca, server), _client_context(test_ca, client), "127.0.0.2") == (None, None)


def test_client_from_another_ca_is_refused(test_ca: TestCA, tmp_path: Path) -> None:
    other = TestCA.create(tmp_path / "other")
    server = test_ca.issue("tls-server2", hosts=["127.0.0.2"])
    stranger = other.issue("stranger", hosts=["127.0.0.3"])
    # The stranger trusts our CA (so it accepts the server) but its own certificate chains elsewhere.
    client_ctx = ssl.create_default_context(cafile=str(test_ca.cert_path))
    client_ctx.load_cert_chain(stranger.cert_path, stranger.key_path)
    client_error, server_error = _handshake(_server_context(test_ca, server), client_ctx, "127.0.0.2")
    assert server_error is not None and "certificate" in server_error.lower()
    # TLS 1.3 reports the client's rejection after the handshake, on first read.
    assert client_error is not None


def test_server_from_another_ca_is_refused(test_ca: TestCA, tmp_path: Path) -> None:
    other = TestCA.create(tmp_path / "other")
    rogue = other.issue("rogue", hosts=["127.0.0.2"])
    client = test_ca.issue("tls-client2", hosts=["127.0.0.3"])
    client_error, _ = _handshake(_server_context(other, rogue), _client_context(test_ca, client), "127.0.0.2")
    assert client_error is not None and "certificate verify failed" in client_error


def test_san_mismatch_is_refused(test_ca: TestCA) -> None:
    server = test_ca.issue("tls-server3", hosts=["127.0.0.5"])
    client = test_ca.issue("tls-client3")
    client_error, _ = _handshake(_server_context(test_ca, server), _client_context(test_ca, client), "127.0.0.2")
    assert client_error is not None and "mismatch" in client_error.lower()
