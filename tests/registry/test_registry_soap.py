"""Malformed SOAP is answered with a SOAP 1.2 fault naming the problem — never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import RegistryUnderTest, start_registry
from lxml import etree
from xdsfactory import ITI18, ITI41, NS, Submission, Vihf, find_documents, parse_reply, provide_and_register

from registry.context import RegistryContext

SOAP12 = "application/soap+xml; charset=UTF-8"


def envelope(
    body: str = "<x:Ping xmlns:x='urn:test'/>",
    action: str | None = ITI18,
    extra_header: str = "",
    soap_ns: str = NS["soap"],
) -> bytes:
    action_header = f"<wsa:Action>{action}</wsa:Action>" if action else ""
    return (
        f"<?xml version='1.0'?><s:Envelope xmlns:s='{soap_ns}' xmlns:wsa='{NS['wsa']}'><s:Header>"
        f"<wsa:MessageID>urn:uuid:1234</wsa:MessageID>{action_header}{extra_header}</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


BOMB = (
    b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
    b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>&b;</s:Body></s:Envelope>"
)

CASES: list[tuple[str, str, bytes, str | None, int, str, str]] = [
    ("not XML", "/xds/registry", b"hello", SOAP12, 400, "soap:Sender", "not well-formed XML"),
    ("empty body", "/xds/registry", b"", SOAP12, 400, "soap:Sender", "empty document"),
    ("entity bomb", "/xds/registry", BOMB, SOAP12, 400, "soap:Sender", "document type declarations are not allowed"),
    ("not an envelope", "/xds/registry", b"<a/>", SOAP12, 400, "soap:Sender", "not a SOAP 1.2 env:Envelope"),
    (
        "SOAP 1.1 envelope",
        "/xds/registry",
        envelope(soap_ns="http://schemas.xmlsoap.org/soap/envelope/"),
        SOAP12,
        400,
        "soap:VersionMismatch",
        "SOAP 1.1 envelope",
    ),
    ("text/xml", "/xds/registry", envelope(), "text/xml", 415, "soap:VersionMismatch", "SOAP 1.1 media type"),
    ("JSON", "/xds/registry", b"{}", "application/json", 415, "soap:Sender", "unsupported media type"),
    ("no content type", "/xds/registry", envelope(), None, 415, "soap:Sender", "missing Content-Type"),
    ("no Action", "/xds/registry", envelope(action=None), SOAP12, 400, "soap:Sender", "wsa:Action header is required"),
    (
        "unknown action",
        "/xds/registry",
        envelope(action="urn:example:Hello"),
        SOAP12,
        400,
        "soap:Sender",
        "is not served at /xds/registry",
    ),
    (
        "ITI-41 at the registry endpoint",
        "/xds/registry",
        envelope(action=ITI41),
        SOAP12,
        400,
        "soap:Sender",
        "is not served",
    ),
    (
        "ITI-18 at the repository endpoint",
        "/xds/repository",
        envelope(action=ITI18),
        SOAP12,
        400,
        "soap:Sender",
        "is not served at /xds/repository",
    ),
    (
        "two body elements",
        "/xds/registry",
        envelope(body="<a/><b/>"),
        SOAP12,
        400,
        "soap:Sender",
        "exactly one element, found 2",
    ),
    (
        "unknown mandatory header",
        "/xds/registry",
        envelope(extra_header=f"<x:Trace xmlns:x='urn:test' s:mustUnderstand='true' xmlns:s='{NS['soap']}'/>"),
        SOAP12,
        400,
        "soap:MustUnderstand",
        "is not understood",
    ),
    (
        "multipart that is not MTOM",
        "/xds/repository",
        b"--b\r\n\r\nx\r\n--b--",
        "multipart/related; boundary=b",
        415,
        "soap:Sender",
        'expected "application/xop+xml"',
    ),
    (
        "truncated MTOM",
        "/xds/repository",
        b"--b\r\nContent-Type: application/xop+xml\r\n\r\n<a/>",
        'multipart/related; boundary=b; type="application/xop+xml"',
        400,
        "soap:Sender",
        "MTOM package",
    ),
    (
        "MTOM without boundary",
        "/xds/repository",
        b"x",
        'multipart/related; type="application/xop+xml"',
        400,
        "soap:Sender",
        "boundary",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "code", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_requests_get_a_soap_fault(
    registry: RegistryUnderTest, path: str, body: bytes, content_type: str | None, status: int, code: str, reason: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = registry.client.post(path, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/soap+xml")
    reply = parse_reply(response.status_code, response.headers["content-type"], response.content)
    assert reply.fault is not None
    assert reply.fault[0] == code
    assert reason in reply.fault[2]
    assert reply.envelope.findtext("soap:Header/wsa:Action", namespaces=NS) == (
        "http://www.w3.org/2005/08/addressing/soap/fault"
    )


def test_fault_relates_to_the_request(registry: RegistryUnderTest) -> None:
    response = registry.client.post(
        "/xds/registry", content=envelope(action="urn:example:Hello"), headers={"Content-Type": SOAP12}
    )
    reply = parse_reply(response.status_code, response.headers["content-type"], response.content)
    assert reply.relates_to == "urn:uuid:1234"
    assert reply.fault is not None and reply.fault[1] == "wsa:ActionNotSupported"


def test_include_of_a_missing_part_is_a_fault(registry: RegistryUnderTest) -> None:
    built = provide_and_register(Submission(), registry.pki)
    built.body = built.body.replace(b'href="cid:0.2"', b'href="cid:nowhere"', 1)
    reply = registry.post("/xds/repository", built)
    assert reply.status_code == 400
    assert reply.fault is not None and "names no MIME part" in reply.fault[2]


def test_inline_document_that_is_not_base64_is_a_fault(registry: RegistryUnderTest) -> None:
    built = provide_and_register(Submission(), registry.pki, inline=True)
    root = etree.fromstring(built.body)
    root.find(".//xdsb:Document", NS).text = "*** not base64 ***"
    built.body = etree.tostring(root)
    reply = registry.post("/xds/repository", built)
    assert reply.fault is not None and "neither xop:Include nor base64" in reply.fault[2]


def test_wrong_request_element_for_the_action(registry: RegistryUnderTest) -> None:
    built = find_documents(Submission().patient_id, registry.pki)
    built.body = built.body.replace(ITI18.encode(), ITI41.encode())
    reply = registry.post("/xds/repository", built)
    assert (reply.status_code, reply.fault) == (200, None)
    assert reply.errors[0][0] == "XDSRegistryMetadataError"
    assert "is not xdsb:ProvideAndRegisterDocumentSetRequest" in reply.errors[0][1]


@pytest.fixture()
def tiny_limit_registry(registry: RegistryUnderTest) -> Iterator[RegistryUnderTest]:
    """The same registry with a 4 KiB request limit."""
    ctx = registry.context
    settings = ctx.settings.model_copy(update={"max_request_bytes": 4096})
    small = RegistryContext(
        settings=settings, database=ctx.database, blobs=ctx.blobs, trust=ctx.trust, tokens=ctx.tokens
    )
    yield from start_registry(registry.backend, settings.data_dir, registry.pki, settings.database_url, context=small)


def test_oversized_request_is_413(tiny_limit_registry: RegistryUnderTest) -> None:
    built = provide_and_register(Submission(), tiny_limit_registry.pki)
    reply = tiny_limit_registry.post("/xds/repository", built)
    assert reply.status_code == 413
    assert reply.fault is not None and "exceeds the limit of 4096" in reply.fault[2]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for offset in range(0, len(built.body), 1000):
            yield built.body[offset : offset + 1000]

    streamed = tiny_limit_registry.client.post(
        "/xds/repository", content=chunks(), headers={"Content-Type": built.content_type}
    )
    assert streamed.status_code == 413


def test_no_trusted_ca_refuses_every_call(registry: RegistryUnderTest, tmp_path: object) -> None:
    from registry.security.xmldsig import TrustStore

    ctx = registry.context
    untrusting = RegistryContext(
        settings=ctx.settings, database=ctx.database, blobs=ctx.blobs, trust=TrustStore([]), tokens=ctx.tokens
    )
    for running in start_registry(
        registry.backend, ctx.settings.data_dir, registry.pki, ctx.settings.database_url, context=untrusting
    ):
        sub = Submission()
        reply = running.post("/xds/registry", find_documents(sub.patient_id, running.pki, vihf=Vihf(sub.patient_id)))
        assert reply.fault is not None and "trusts no CA" in reply.fault[2]
