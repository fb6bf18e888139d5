"""The demo identity provider process (npm ``oidc-provider`` run by Node.js): start, discovery, keys, stop."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from drimbox.devnet.errors import DevnetError
from drimbox.devnet.oidc import OidcAccount, OidcClientRegistration, OidcProvider
from drimbox.devnet.pki import TestCA

ACCOUNT = OidcAccount(rpps="10101010101", password="pw-1", name="Dr Test Radiologue")
CLIENT = OidcClientRegistration("site-b", "secret-b", ("http://127.0.0.3:8080/auth/callback",))


def test_provider_announces_itself_and_signs_with_the_demo_key(tmp_path: Path) -> None:
    key = TestCA.create(tmp_path / "pki").issue_signing_key("idp")
    provider = OidcProvider(tmp_path / "idp", signing_key=key.key_path, accounts=[ACCOUNT], clients=[CLIENT],
                            host="127.0.0.5")
    with provider:
        pid = provider.pid
        assert pid is not None
        doc = httpx.get(provider.discovery_url, timeout=5).json()
        assert doc["issuer"] == provider.issuer == f"http://127.0.0.5:{provider.port}"
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
        assert doc["response_types_supported"] == ["code"]
        jwks = httpx.get(doc["jwks_uri"], timeout=5).json()
        assert len(jwks["keys"]) == 1 and "d" not in jwks["keys"][0]  # public part only
        published = jwt.PyJWK.from_dict(jwks["keys"][0]).key
        expected = serialization.load_pem_public_key(key.public_key_path.read_bytes())
        pem = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        assert published.public_bytes(*pem) == expected.public_bytes(*pem)
        # The settings file holds passwords and client secrets: owner-only.
        assert provider.settings_path.stat().st_mode & 0o077 == 0
    assert provider.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_npm_package_is_a_clear_error(tmp_path: Path) -> None:
    key = TestCA.create(tmp_path / "pki").issue_signing_key("idp")
    provider = OidcProvider(tmp_path / "idp", signing_key=key.key_path, accounts=[ACCOUNT], clients=[CLIENT],
                            modules_dir=tmp_path / "nowhere")
    with pytest.raises(DevnetError, match="scripts/setup.sh"):
        provider.start()


def test_a_bad_key_fails_start_up_with_the_log(tmp_path: Path) -> None:
    bad = tmp_path / "rsa.key"
    bad.write_text("not a key")
    provider = OidcProvider(tmp_path / "idp", signing_key=bad, accounts=[ACCOUNT], clients=[CLIENT])
    with pytest.raises(DevnetError, match="exited"):
        provider.start(timeout=10)
    assert provider.pid is None
