"""Trust: authentication on every face, the trust list (peers not listed, corrupted lists), the
audit of accesses, and the registry's signed list.

Everything is observed from outside: a refused request is a status code; a corrupted list the node
must reject is one the kit serves (``--trust-list-feed``) — had the node taken it, the kit (like
every peer) would no longer be admitted; the audit is read through the operator's export command
(a FHIR Bundle of AuditEvents), never from the node's database.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from drimbox.certify.families._dicom import ANS_ACCEPT, kos_headers
from drimbox.certify.families.dicomweb import random_uid
from drimbox.certify.feed import TrustListFeed, corrupted_variants
from drimbox.certify.model import Family, Profile, Scenario
from drimbox.certify.probe import Probe
from drimbox.certify.wire import Reply, token_claims

# The ANS list format's verifier (xmlsec, XPath Filter 2.0): a generic helper, used here to judge the registry.
from drimbox.errors import TrustListRejected
from drimbox.trust.trustlist import verify_trust_list

__all__ = ["SCENARIOS"]

_TRUST_REF = "DESIGN F11; ANS Liste blanche (signée / non signée = cas corrompu)"


def _network_target(probe: Probe) -> tuple[str, str, str]:
    """Network root, the kit's KOS and one series URL under it."""
    publication = probe.data.publication()
    kit = probe.data.study()
    probe.uses(f"KOS {publication.kos.SOPInstanceUID} published by the node for the kit-produced study")
    probe.require(probe.target.network_dicomweb is not None, "the network face's DICOMweb root is not known")
    root = str(probe.target.network_dicomweb)
    return root, str(publication.kos.SOPInstanceUID), \
        f"{root}/studies/{kit.study.study_instance_uid}/series/{kit.series_uid}"


def _unauthenticated(probe: Probe) -> None:
    _, kos_uid, series_url = _network_target(probe)
    reply = probe.wire.get(series_url, via="network", headers=kos_headers(kos_uid), auth=False,
                           title="network face, no bearer token")
    probe.check(reply.status == 401, f"network face without a token answered {reply.status}, expected 401")
    probe.check("www-authenticate" in reply.headers, "401 without WWW-Authenticate (RFC 6750 §3)")
    if probe.target.dicomweb:
        kit = probe.data.study()
        reply = probe.wire.get(f"{probe.target.dicomweb}/studies", params={"StudyInstanceUID":
                                                                           kit.study.study_instance_uid},
                               auth=False, title="site face, no bearer token")
        probe.check(reply.status == 401, f"site face without a token answered {reply.status}, expected 401")


def _forged_token(probe: Probe) -> None:
    _, kos_uid, series_url = _network_target(probe)
    claims = token_claims(probe.wire.token) or {"sub": "rpps:10101010101"}
    claims["exp"] = int(time.time()) + 600
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                        headers={"kid": "certify-forged"})
    reply = probe.wire.get(series_url, via="network", headers={**kos_headers(kos_uid), **probe.wire.bearer(forged)},
                           auth=False, title="network face, token signed by an unknown key")
    probe.check(reply.status == 401, f"a token signed by an unknown key answered {reply.status}, expected 401")
    expired = jwt.encode({**claims, "exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
                         ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    unsigned = jwt.encode(claims, key="", algorithm="none")
    for what, token in (("an expired token by an unknown key", expired), ("an alg=none token", unsigned)):
        reply = probe.wire.get(series_url, via="network", auth=False, title=f"network face, {what}",
                               headers={**kos_headers(kos_uid), **probe.wire.bearer(token)})
        probe.check(reply.status == 401, f"{what} answered {reply.status}, expected 401")


def _admitted(reply: Reply) -> bool:
    """Past the peer check: the manifest scope (or the data) answered, not a trust-list refusal."""
    return reply.status != 403 or "trust" not in reply.text().lower()


def _unlisted_peer(probe: Probe) -> None:
    _, kos_uid, series_url = _network_target(probe)
    probe.require(probe.target.stranger_address is not None,
                  "no address outside the trust list to connect from (stranger_address)")
    reply = probe.wire.get(series_url, via="stranger", headers=kos_headers(kos_uid),
                           title=f"valid certificate, from {probe.target.stranger_address} (not on the trust list)")
    probe.check(reply.status == 403, f"a peer not on the trust list answered {reply.status}, expected 403")
    listed = probe.wire.get(series_url, via="network", headers=kos_headers(kos_uid),
                            title=f"the same request from {probe.target.local_address} (listed)")
    probe.check(listed.status == 200, f"the listed kit answered {listed.status}: the refusal is not about the list")


def _no_client_certificate(probe: Probe) -> None:
    _, kos_uid, series_url = _network_target(probe)
    try:
        reply = probe.wire.get(series_url, via="no-client-cert", headers=kos_headers(kos_uid),
                               title="network face without a client certificate")
    except httpx.HTTPError as exc:
        probe.note(f"TLS handshake refused without a client certificate: {exc!r}")
        return
    probe.check(reply.status in (401, 403), f"without a client certificate the network face answered "
                                            f"{reply.status}; mutual TLS must refuse")


def _corrupted_list(probe: Probe) -> None:
    _, kos_uid, series_url = _network_target(probe)
    feed_at = probe.target.trust_list_feed
    probe.require(feed_at is not None, "the node's handling of a corrupted trust list cannot be observed: run with "
                  "--trust-list-feed HOST:PORT and point the node's trust-list URL there")
    probe.require(probe.target.whitelist is not None, "the registry's trust list URL is not known (--registry)")
    genuine = probe.wire.get(str(probe.target.whitelist), auth=False, title="the registry's signed trust list")
    probe.require(genuine.status == 200, f"the registry's trust list answered {genuine.status}")
    before = probe.wire.get(series_url, via="network", headers=kos_headers(kos_uid), title="admitted before")
    probe.require(_admitted(before), "the kit is not admitted even before any corrupted list was served")
    variants = corrupted_variants(genuine.content)
    assert feed_at is not None
    feed = TrustListFeed(feed_at, variants)
    try:
        for count in range(1, len(variants) + 1):
            fetches = feed.wait_for(count, probe.target.trust_list_wait_s)
            if not probe.check(len(fetches) >= count, f"the node fetched {len(fetches)} list(s) from the feed in "
                                                      f"{probe.target.trust_list_wait_s:.0f} s, {count} needed"):
                break
            served = fetches[count - 1].variant
            time.sleep(1.0)  # time to verify (and, wrongly, install) the list
            after = probe.wire.get(series_url, via="network", headers=kos_headers(kos_uid),
                                   title=f"after the node fetched the {served}")
            probe.check(_admitted(after), f"after fetching the {served}, the node refuses the listed kit "
                                          f"({after.status}): it installed the corrupted list")
        probe.evidence("data", "trust-list feed", "\n".join(f"{f.variant} fetched by {f.peer}"
                                                             for f in feed.fetched()))
    finally:
        feed.close()


def _fhir_events(probe: Probe, since: datetime) -> list[dict[str, Any]]:
    argv = [a.replace("{since}", since.strftime("%Y-%m-%dT%H:%M:%S")) for a in probe.target.audit_command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    probe.evidence("tool", shlex.join(argv), f"exit {done.returncode}\n{done.stdout[:4000]}\n{done.stderr[-1000:]}")
    probe.require(done.returncode == 0, f"the audit export command failed (exit {done.returncode})")
    bundle = json.loads(done.stdout)
    return [e["resource"] for e in bundle.get("entry", []) if e.get("resource", {}).get("resourceType")
            == "AuditEvent"]


def _mentions(event: dict[str, Any], uid: str) -> bool:
    return any(str(e.get("what", {}).get("identifier", {}).get("value", "")).endswith(uid)
               for e in event.get("entity", []))


def _audit(probe: Probe) -> None:
    root, kos_uid, series_url = _network_target(probe)
    probe.require(bool(probe.target.audit_command), "no way to read the node's audit trail: give --audit-command")
    since = datetime.now(UTC) - timedelta(seconds=5)
    instance = probe.data.study().study.instances[0].sop_instance_uid
    served = probe.wire.get(f"{series_url}/instances/{instance}", via="network",
                            headers=kos_headers(kos_uid, ANS_ACCEPT), title="an instance, in the manifest")
    probe.require(served.status == 200, f"the in-manifest instance answered {served.status}")
    outside = random_uid()
    refused = probe.wire.get(f"{root}/studies/{outside}", via="network", headers=kos_headers(kos_uid),
                             title="a study outside the manifest")
    probe.check(refused.status == 403, f"out-of-manifest request answered {refused.status}, expected 403")
    time.sleep(0.5)
    events = _fhir_events(probe, since)
    access = [e for e in events if _mentions(e, instance)]
    probe.check(bool(access), f"no AuditEvent names the instance {instance} the kit retrieved")
    rpps = token_claims(probe.wire.token).get("rpps")
    if access and rpps:
        who = {str(a.get("who", {}).get("identifier", {}).get("value", "")) for e in access for a in e.get("agent", [])}
        probe.check(any(w.endswith(str(rpps)) for w in who), f"the access events do not name practitioner {rpps}")
    refusals = [e for e in events if _mentions(e, outside) or (_mentions(e, kos_uid) and e.get("outcome") == "4")]
    probe.check(any(e.get("outcome") not in (None, "0") for e in refusals),
                f"no AuditEvent records the refused out-of-manifest request (study {outside})")


def _registry_list(probe: Probe) -> None:
    probe.require(probe.target.whitelist is not None, "the registry's trust list URL is not known")
    reply = probe.wire.get(str(probe.target.whitelist), auth=False, title="the registry's trust list")
    probe.require(reply.status == 200, f"the trust list answered {reply.status}")
    probe.require(probe.target.ca_file is not None, "the CA the list's signer chains to is not known (--ca)")
    cas = x509.load_pem_x509_certificates(probe.target.ca_file.read_bytes())  # type: ignore[union-attr]
    root = etree.fromstring(reply.content, etree.XMLParser(resolve_entities=False, no_network=True))
    probe.require(root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is not None,
                  "the registry's trust list is not signed (no ds:Signature): a node must refuse it")
    der = root.findtext(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate") or ""
    probe.require(bool(der), "the list carries no signing certificate (KeyInfo/X509Data)")
    signer = x509.load_der_x509_certificate(base64.b64decode("".join(der.split())))
    cn = signer.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    probe.note(f"signer: {signer.subject.rfc4514_string()}")
    try:
        listed = verify_trust_list(reply.content, trusted_cas=cas, signer_cn=str(cn[0].value) if cn else "",
                                   signer_ou=None, at=datetime.now(UTC))
    except TrustListRejected as exc:
        probe.check(False, f"the registry's trust list does not verify: {exc}")
        return
    if probe.target.network_dicomweb:
        host = urlsplit(probe.target.network_dicomweb).hostname or ""
        probe.check(host in listed.db_hosts, f"the node's network host {host} is not on the registry's list")


def _scenario(sid: str, title: str, profile: Profile, check: object, *, requirement: str | None = None,
              reference: str = _TRUST_REF) -> Scenario:
    return Scenario(sid, Family.TRUST, title, frozenset({profile}), check,  # type: ignore[arg-type]
                    requirement=requirement, reference=reference)


SCENARIOS: tuple[Scenario, ...] = (
    _scenario("trust.unauthenticated", "401 without a bearer token, on the network and the site face",
              Profile.SOURCE, _unauthenticated, reference="DESIGN §2b; RFC 6750"),
    _scenario("trust.forged-token", "401 to a token signed by an unknown key, expired, or unsigned (alg none)",
              Profile.SOURCE, _forged_token, reference="RFC 8725 §3.1-3.2"),
    _scenario("trust.unlisted-peer", "403 to a valid certificate from a host that is not on the trust list",
              Profile.SOURCE, _unlisted_peer),
    _scenario("trust.client-certificate", "The network face requires a client certificate (mutual TLS)",
              Profile.SOURCE, _no_client_certificate, reference="DESIGN §2b"),
    _scenario("trust.corrupted-list", "The node rejects the unsigned and the tampered trust list, keeps the last "
              "good one", Profile.SOURCE, _corrupted_list),
    _scenario("trust.audit", "Accesses and refusals are audited (FHIR AuditEvent export)", Profile.SOURCE, _audit,
              reference="DESIGN §2b; IHE ATNA / FHIR AuditEvent"),
    _scenario("trust.registry-list", "The registry publishes a signed trust list that verifies and lists the node",
              Profile.REGISTRY, _registry_list),
)
