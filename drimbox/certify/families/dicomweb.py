"""WADO-RS / QIDO-RS: the ANS validator samples, the negotiation matrix (200/400/406), multipart
well-formedness, metadata validity, and the manifest scope of a source's network face (400/403).

Generic DICOMweb scenarios (profile ``dicomweb``) run against the site-facing root over the kit's
study; the manifest-scope ones (profile ``drimm-source``) against the network face, in the scope of
the KOS the node published for the kit's study.
"""

from __future__ import annotations

import json
import secrets

from pydicom import Dataset

from drimbox.certify.families._dicom import ANS_ACCEPT, ANS_SYNTAXES, dicom_parts, kos_headers
from drimbox.certify.model import Family, Profile, Scenario, ScenarioFailed
from drimbox.certify.probe import Probe
from drimbox.certify.provision import KitStudy

__all__ = ["SCENARIOS", "random_uid"]

_WADO_REF = "ANS Validateur WADO-RS; PS3.18 §10.4"
_NEG_REF = "PS3.18 §8.7.3 (406 when no acceptable media type), RFC 9110 §12.5.1"
_DICOM_JSON = "application/dicom+json"
_OFFERED = frozenset(ts for ts, _ in ANS_SYNTAXES)


def random_uid() -> str:
    """A syntactically valid UID no node knows."""
    return f"2.25.{secrets.randbits(100)}"


def _site(probe: Probe) -> str:
    probe.require(probe.target.dicomweb is not None, "the target's DICOMweb root is not known (--node URL)")
    assert probe.target.dicomweb is not None
    return probe.target.dicomweb


def _study(probe: Probe) -> KitStudy:
    kit = probe.data.study()
    probe.uses(f"kit-produced CT study {kit.study.study_instance_uid} ({len(kit.study.files)} images, "
               f"{kit.stored_via})")
    return kit


def _series_url(probe: Probe, kit: KitStudy) -> str:
    return f"{_site(probe)}/studies/{kit.study.study_instance_uid}/series/{kit.series_uid}"


def _json_array(probe: Probe, content: bytes, what: str) -> list[dict[str, object]]:
    try:
        value = json.loads(content)
    except ValueError as exc:
        raise ScenarioFailed(f"{what}: body is not JSON ({exc})") from exc
    probe.require(isinstance(value, list), f"{what}: DICOM JSON must be an array, got {type(value).__name__}")
    return value  # type: ignore[no-any-return]


def _uids(items: list[dict[str, object]], tag: str) -> set[str]:
    found: set[str] = set()
    for item in items:
        element = item.get(tag)
        if isinstance(element, dict) and element.get("Value"):
            found.add(str(element["Value"][0]))
    return found


def _qido_hierarchy(probe: Probe) -> None:
    kit = _study(probe)
    root, study_uid = _site(probe), kit.study.study_instance_uid
    reply = probe.wire.get(f"{root}/studies", params={"StudyInstanceUID": study_uid},
                           headers={"Accept": _DICOM_JSON})
    probe.require(reply.status == 200, f"QIDO studies answered {reply.status}, expected 200")
    probe.check(reply.content_type.startswith(_DICOM_JSON), f"QIDO Content-Type {reply.content_type!r}")
    studies = _json_array(probe, reply.content, "QIDO studies")
    probe.check(_uids(studies, "0020000D") == {study_uid}, f"QIDO studies: expected exactly {study_uid}, got "
                                                           f"{sorted(_uids(studies, '0020000D'))}")
    series = _json_array(probe, probe.wire.get(f"{root}/studies/{study_uid}/series",
                                               headers={"Accept": _DICOM_JSON}).content, "QIDO series")
    probe.check(_uids(series, "0020000E") == {kit.series_uid}, "QIDO series: not the study's one series")
    reply = probe.wire.get(f"{root}/studies/{study_uid}/series/{kit.series_uid}/instances",
                           headers={"Accept": _DICOM_JSON})
    instances = _json_array(probe, reply.content, "QIDO instances")
    found = _uids(instances, "00080018")
    stored = kit.sop_uids()
    probe.check(found == stored, f"QIDO instances: {len(found)} found, {len(stored)} stored; "
                                 f"missing {len(stored - found)}, unexpected {len(found - stored)}")


def _qido_bad_query(probe: Probe) -> None:
    _study(probe)
    reply = probe.wire.get(f"{_site(probe)}/studies", params={"limit": "many"}, headers={"Accept": _DICOM_JSON})
    probe.check(reply.status == 400, f"QIDO with limit=many answered {reply.status}, PS3.18 §8.3.4 requires 400")


def _qido_406(probe: Probe) -> None:
    kit = _study(probe)
    reply = probe.wire.get(f"{_site(probe)}/studies", params={"StudyInstanceUID": kit.study.study_instance_uid},
                           headers={"Accept": "application/pdf"})
    probe.check(reply.status == 406, f"QIDO with Accept application/pdf answered {reply.status}, expected 406")


def _wado_sample(probe: Probe, *, instance: bool) -> None:
    kit = _study(probe)
    url = _series_url(probe, kit)
    expected = kit.sop_uids()
    if instance:
        first = kit.study.instances[0].sop_instance_uid
        url, expected = f"{url}/instances/{first}", {first}
    reply = probe.wire.get(url, headers={"Accept": ANS_ACCEPT})
    probe.require(reply.status == 200, f"WADO-RS with the ANS validator's Accept answered {reply.status}, expected 200")
    datasets = dicom_parts(probe, reply, offered=_OFFERED)
    got = {str(ds.SOPInstanceUID) for ds in datasets}
    probe.check(got == expected, f"WADO-RS returned {len(got)} instances, expected {len(expected)}")


def _metadata(probe: Probe) -> None:
    kit = _study(probe)
    reply = probe.wire.get(f"{_series_url(probe, kit)}/metadata", headers={"Accept": _DICOM_JSON})
    probe.require(reply.status == 200, f"series metadata answered {reply.status}")
    probe.check(reply.content_type.startswith(_DICOM_JSON), f"metadata Content-Type {reply.content_type!r}")
    items = _json_array(probe, reply.content, "metadata")
    probe.check(_uids(items, "00080018") == kit.sop_uids(), "metadata does not describe exactly the series' instances")
    for index, item in enumerate(items):
        bad = [tag for tag, element in item.items() if not (isinstance(element, dict) and "vr" in element)]
        probe.check(not bad, f"metadata item {index}: attributes without vr: {bad[:5]}")
        try:
            ds = Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")
        except (ValueError, TypeError, KeyError) as exc:
            probe.check(False, f"metadata item {index}: not valid DICOM JSON (PS3.18 F.2): {exc}")
            continue
        pixel = item.get("7FE00010")
        probe.check(not (isinstance(pixel, dict) and "InlineBinary" in pixel),
                    f"metadata item {index}: pixel data inline (metadata must give a BulkDataURI)")
        probe.check("SOPClassUID" in ds, f"metadata item {index}: no SOPClassUID")


def _negotiate(probe: Probe, accept: str, expected: int, why: str) -> None:
    kit = _study(probe)
    reply = probe.wire.get(_series_url(probe, kit), headers={"Accept": accept})
    probe.check(reply.status == expected, f"Accept {accept!r} answered {reply.status}; {why} requires {expected}")
    if reply.status >= 500:
        probe.check(False, "a client error answered with a server error (5xx)")


def _neg_pdf(probe: Probe) -> None:
    _negotiate(probe, "application/pdf", 406, "PS3.18 §8.7.3 (media type the resource cannot be in)")


def _neg_syntax(probe: Probe) -> None:
    _negotiate(probe, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.9999',
               406, "PS3.18 §8.7.3.5 (no acceptable transfer syntax)")


def _neg_malformed(probe: Probe) -> None:
    _negotiate(probe, 'multipart/related; type="application/dicom"; q=7', 400, "RFC 9110 §12.4.2 (q > 1)")


def _source_kos(probe: Probe) -> tuple[str, str, str]:
    """The network root, the published KOS UID and one series URL under it."""
    publication = probe.data.publication()
    probe.uses(f"KOS {publication.kos.SOPInstanceUID} published by the node for the kit-produced study")
    probe.require(probe.target.network_dicomweb is not None, "the network face's DICOMweb root is not known")
    assert probe.target.network_dicomweb is not None
    kit = probe.data.study()
    root = probe.target.network_dicomweb
    return root, str(publication.kos.SOPInstanceUID), f"{root}/studies/{kit.study.study_instance_uid}/series/" \
                                                        f"{kit.series_uid}"


def _retrieve_urls(probe: Probe) -> None:
    publication = probe.data.publication()
    _source_kos(probe)
    kos_uid = str(publication.kos.SOPInstanceUID)
    for item in publication.kos.CurrentRequestedProcedureEvidenceSequence:
        for series in item.ReferencedSeriesSequence:
            url = str(series.get("RetrieveURL", ""))
            if not probe.check(bool(url), f"series {series.SeriesInstanceUID}: no RetrieveURL in the KOS"):
                continue
            reply = probe.wire.get(url, via="network", headers=kos_headers(kos_uid),
                                   title="WADO-RS of a RetrieveURL (ANS Accept, KOS header)")
            if not probe.check(reply.status == 200, f"{url} answered {reply.status}"):
                continue
            got = {str(ds.SOPInstanceUID) for ds in dicom_parts(probe, reply, offered=_OFFERED)}
            listed = {str(i.ReferencedSOPInstanceUID) for i in series.ReferencedSOPSequence}
            probe.check(got == listed, f"{url}: {len(got)} instances served, the KOS lists {len(listed)}")


def _scope_missing(probe: Probe) -> None:
    _, _, series_url = _source_kos(probe)
    reply = probe.wire.get(series_url, via="network", headers={"Accept": ANS_ACCEPT})
    probe.check(reply.status == 400, f"no KOS-SOPInstanceUID header: answered {reply.status}, expected 400")


def _scope_outside(probe: Probe) -> None:
    root, kos_uid, series_url = _source_kos(probe)
    kit = probe.data.study()
    outside = {
        "a study outside the KOS": f"{root}/studies/{random_uid()}",
        "a series outside the KOS": f"{root}/studies/{kit.study.study_instance_uid}/series/{random_uid()}",
        "an instance the KOS does not list": f"{series_url}/instances/{random_uid()}",
        "metadata of a study outside the KOS": f"{root}/studies/{random_uid()}/metadata",
    }
    for what, url in outside.items():
        reply = probe.wire.get(url, via="network", headers=kos_headers(kos_uid))
        probe.check(reply.status == 403, f"{what}: answered {reply.status}, expected 403")
    reply = probe.wire.get(series_url, via="network", headers=kos_headers(random_uid()))
    probe.check(reply.status == 403, f"a KOS the node never published: answered {reply.status}, expected 403")


def _family(sid: str, title: str, profile: Profile, check: object, *, requirement: str | None = None,
            reference: str = _WADO_REF) -> Scenario:
    return Scenario(sid, Family.DICOMWEB, title, frozenset({profile}), check,  # type: ignore[arg-type]
                    requirement=requirement, reference=reference)


SCENARIOS: tuple[Scenario, ...] = (
    _family("dicomweb.qido.hierarchy", "QIDO-RS finds the study, its series and every instance",
            Profile.DICOMWEB, _qido_hierarchy, reference="PS3.18 §10.6"),
    _family("dicomweb.qido.bad-query", "QIDO-RS answers 400 to an invalid query parameter",
            Profile.DICOMWEB, _qido_bad_query, reference="PS3.18 §8.3.4"),
    _family("dicomweb.qido.406", "QIDO-RS answers 406 to an Accept it cannot satisfy", Profile.DICOMWEB, _qido_406,
            reference=_NEG_REF),
    _family("dicomweb.wado.ans-series", "WADO-RS series with the ANS validator's request (Requête WADO-RS - Série)",
            Profile.DICOMWEB, lambda p: _wado_sample(p, instance=False)),
    _family("dicomweb.wado.ans-instance", "WADO-RS instance with the ANS validator's request (Requête WADO-RS - "
            "Instance)", Profile.DICOMWEB, lambda p: _wado_sample(p, instance=True)),
    _family("dicomweb.wado.metadata", "WADO-RS series metadata is valid DICOM JSON for every instance",
            Profile.DICOMWEB, _metadata, reference="PS3.18 §10.4.1.1.2, Annex F"),
    _family("dicomweb.negotiation.406-media-type", "406 to a media type a DICOM resource cannot be in",
            Profile.DICOMWEB, _neg_pdf, reference=_NEG_REF),
    _family("dicomweb.negotiation.406-transfer-syntax", "406 to a transfer syntax the server does not know",
            Profile.DICOMWEB, _neg_syntax, reference=_NEG_REF),
    _family("dicomweb.negotiation.400-malformed", "400 to a malformed Accept header", Profile.DICOMWEB,
            _neg_malformed, reference="RFC 9110 §12.4.2"),
    _family("dicomweb.source.retrieve-urls", "Every RetrieveURL of the KOS serves exactly its instances (F7)",
            Profile.SOURCE, _retrieve_urls, reference="DESIGN F7; ANS Validateur WADO-RS"),
    _family("dicomweb.source.kos-header-required", "400 without KOS-SOPInstanceUID on the network face",
            Profile.SOURCE, _scope_missing, reference="ANS WADO-RS sample (KOS-SOPInstanceUID header)"),
    _family("dicomweb.source.manifest-scope", "403 outside the manifest named by KOS-SOPInstanceUID",
            Profile.SOURCE, _scope_outside, reference="DESIGN §2b"),
)
