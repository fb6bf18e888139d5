"""MHD read view: ITI-67 DocumentReference search, ITI-68 retrieval, bearer tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from conftest import TOKEN_AUDIENCE, TOKEN_ISSUER, RegistryUnderTest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from xdsfactory import SUCCESS, Submission, update_status

from registry.store.models import DocumentEntryRow

KOS_TYPE = "urn:oid:1.2.250.1.213.1.1.4.12|IMG-KOS"


def token(registry: RegistryUnderTest, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": TOKEN_ISSUER,
        "aud": TOKEN_AUDIENCE,
        "sub": "rpps:10101010101",
        "iat": now,
        "exp": now + 600,
        "rpps": "10101010101",
        "role": "radiologist",
        **claims,
    }
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, registry.pki.token_key, algorithm="ES256")


def get(registry: RegistryUnderTest, path: str, bearer: str | None = "valid", **params: str) -> Any:
    headers = {"Authorization": f"Bearer {token(registry) if bearer == 'valid' else bearer}"} if bearer else {}
    return registry.client.get(path, params=params, headers=headers)


def search(registry: RegistryUnderTest, sub: Submission, **params: str) -> Any:
    return get(
        registry,
        "/fhir/DocumentReference",
        **{"patient.identifier": f"urn:oid:1.2.250.1.213.1.4.10|{sub.ins}", **params},
    )


@pytest.fixture()
def published(registry: RegistryUnderTest) -> Submission:
    """One fresh submission (KOS + DSG signature)."""
    sub = Submission()
    assert registry.publish(sub).status == SUCCESS
    return sub


def test_search_finds_the_kos_and_binary_returns_its_bytes(registry: RegistryUnderTest, published: Submission) -> None:
    response = search(registry, published, type=KOS_TYPE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", 1)
    reference = bundle["entry"][0]["resource"]
    assert reference["resourceType"] == "DocumentReference"
    assert reference["masterIdentifier"]["value"] == f"urn:oid:{published.kos_uid}"
    assert reference["status"] == "current"
    assert reference["date"].endswith("Z") and len(reference["date"]) == 20
    assert reference["subject"]["identifier"] == {"system": "urn:oid:1.2.250.1.213.1.4.10", "value": published.ins}
    assert reference["type"]["coding"][0]["code"] == "IMG-KOS"
    assert reference["category"][0]["coding"][0]["code"] == "31"
    related = {r["identifier"]["type"]["text"]: r["identifier"]["value"] for r in reference["context"]["related"]}
    assert related["urn:ihe:iti:xds:2016:studyInstanceUID"] == published.study_uid
    assert related["urn:ihe:iti:xds:2013:accession"] == published.accession
    attachment = reference["content"][0]["attachment"]
    assert (attachment["contentType"], attachment["size"]) == ("application/dicom", len(published.kos))
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(published.kos).digest()).decode()
    assert reference["content"][0]["format"]["code"] == "1.2.840.10008.5.1.4.1.1.88.59"
    assert attachment["url"].startswith("http://testserver/fhir/Binary/")
    document = get(registry, attachment["url"].removeprefix("http://testserver"))
    assert document.status_code == 200
    assert document.headers["content-type"] == "application/dicom"
    assert document.content == published.kos
    read = get(registry, f"/fhir/DocumentReference/{reference['id']}")
    assert read.json()["masterIdentifier"] == reference["masterIdentifier"]


def test_search_by_status_and_paging(registry: RegistryUnderTest, published: Submission) -> None:
    assert search(registry, published).json()["total"] == 2  # the KOS and its signature document
    with registry.context.database.session() as session:
        target = session.scalars(
            select(DocumentEntryRow.entry_uuid).where(DocumentEntryRow.unique_id == published.kos_uid)
        ).one()
    assert registry.post("/xds/registry", update_status(published, target, registry.pki)).status == SUCCESS
    current = search(registry, published, status="current").json()
    superseded = search(registry, published, status="superseded").json()
    assert [e["resource"]["masterIdentifier"]["value"] for e in superseded["entry"]] == [f"urn:oid:{published.kos_uid}"]
    assert superseded["entry"][0]["resource"]["status"] == "superseded"
    assert current["total"] == 1
    page = search(registry, published, _count="1").json()
    assert (page["total"], len(page["entry"])) == (2, 1)
    assert [link["relation"] for link in page["link"]] == ["self", "next"]


def test_search_requires_the_patient_identifier(registry: RegistryUnderTest) -> None:
    response = get(registry, "/fhir/DocumentReference")
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    bad = get(registry, "/fhir/DocumentReference", **{"patient.identifier": "162018885045327"})
    assert bad.status_code == 400


def test_unknown_resources_are_404(registry: RegistryUnderTest) -> None:
    for path in (
        "/fhir/DocumentReference/00000000-0000-4000-8000-000000000000",
        "/fhir/Binary/00000000-0000-4000-8000-000000000000",
    ):
        response = get(registry, path)
        assert response.status_code == 404 and response.json()["issue"][0]["code"] == "not-found"


def _unsigned(registry: RegistryUnderTest) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": TOKEN_ISSUER, "aud": TOKEN_AUDIENCE, "sub": "x", "iat": now, "exp": now + 60}, None, algorithm="none"
    )


def _hmac_with_public_key(registry: RegistryUnderTest) -> str:
    # the classic confusion attack: the issuer's public key used as an HMAC secret
    # (signed by hand: PyJWT itself refuses to use a PEM key as an HMAC secret)
    now = int(time.time())

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(
        json.dumps({"iss": TOKEN_ISSUER, "aud": TOKEN_AUDIENCE, "sub": "x", "iat": now, "exp": now + 60}).encode()
    )
    secret = registry.pki.token_public_key_file.read_bytes()
    signature = part(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    return f"{header}.{body}.{signature}"


def _foreign_key(registry: RegistryUnderTest) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": TOKEN_ISSUER, "aud": TOKEN_AUDIENCE, "sub": "x", "iat": now, "exp": now + 60},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
    )


BAD_TOKENS = [
    ("no token", lambda r: None, "bearer token is required"),
    ("not a JWT", lambda r: "abc.def", "malformed token"),
    ("alg none", _unsigned, "'none' is not accepted"),
    ("HS256 with the public key", _hmac_with_public_key, "'HS256' is not accepted"),
    ("other signing key", _foreign_key, "invalid token"),
    ("wrong audience", lambda r: token(r, aud="someone-else"), "invalid token"),
    ("wrong issuer", lambda r: token(r, iss="https://evil"), "invalid token"),
    ("expired", lambda r: token(r, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), "token expired"),
    ("no subject", lambda r: token(r, sub=None), "invalid token"),
]


@pytest.mark.parametrize(("make", "detail"), [b[1:] for b in BAD_TOKENS], ids=[b[0] for b in BAD_TOKENS])
def test_bad_tokens_are_401(registry: RegistryUnderTest, published: Submission, make: Any, detail: str) -> None:
    bearer = make(registry)
    response = (
        search(registry, published)
        if bearer == "valid"
        else get(
            registry,
            "/fhir/DocumentReference",
            bearer=bearer,
            **{"patient.identifier": f"urn:oid:1.2.250.1.213.1.4.10|{published.ins}"},
        )
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert detail in response.json()["issue"][0]["diagnostics"]
