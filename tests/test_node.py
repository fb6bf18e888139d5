"""The node runtime: dev mode is explicit and refused together with TLS; tokens otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from drimbox.config import load_settings
from drimbox.errors import ConfigError
from drimbox.node import build_verifier
from drimbox.trust import JwtVerifier

PACS = {"aet": "PACS", "host": "127.0.0.1", "port": 4242}


def test_dev_mode_without_tls_disables_verification() -> None:
    assert build_verifier(load_settings(pacs=PACS, auth={"dev_mode": True})) is None


def test_dev_mode_is_refused_with_tls(tmp_path: Path) -> None:
    settings = load_settings(pacs=PACS, auth={"dev_mode": True},
                             tls={"cert_file": str(tmp_path / "n.pem"), "key_file": str(tmp_path / "n.key")})
    with pytest.raises(ConfigError, match="auth.dev_mode"):
        build_verifier(settings)


def test_tokens_are_verified_by_default(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = tmp_path / "idp.pem"
    pem.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    settings = load_settings(pacs=PACS, auth={"issuer": "urn:idp", "public_key_file": str(pem)})
    assert isinstance(build_verifier(settings), JwtVerifier)


def test_no_key_no_default_open_door() -> None:
    with pytest.raises(ConfigError, match="auth"):
        build_verifier(load_settings(pacs=PACS))
