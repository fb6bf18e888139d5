"""The consumer's interfaces (profile ``drimm-consumer``): the contextual call of the patient's
record software (F5) and the portal it leads to (F6).

The contextual call is an HTML form POST of the patient's INS traits: an invalid INS (wrong control
key) gets a 400 page listing the problem, a call without the patient's consent a 403, a valid call a
303 to the patient's page whose Location does not carry the INS (URLs end up in logs and browser
history); that page shows nothing before the user logs in.
"""

from __future__ import annotations

import re
import secrets
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlencode, urljoin

import pydicom
from pydicom.errors import InvalidDicomError

from drimbox.certify.model import Family, Profile, Scenario
from drimbox.certify.probe import Probe
from drimbox.testdata import make_patient
from drimbox.testdata.identity import Patient

__all__ = ["SCENARIOS"]

_STATE = re.compile(r'class="state state-(\w+)"')
_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}


def _form(patient: Patient, **changes: str) -> dict[str, str]:
    born = patient.birth_date
    return {"Patient.identifier.value": str(patient.ins), "Patient.identifier.system": f"urn:oid:{patient.ins_oid}",
            "Patient.name.family": patient.family, "Patient.name.given": patient.given, "Patient.gender": patient.sex,
            "Patient.birthDate": f"{born[:4]}-{born[4:6]}-{born[6:]}", "Address.district": "75056",
            "InformationEtConsentement": "true", "PatientID": patient.ipp, "PatientIDIssuer": patient.ipp_issuer,
            **changes}


def _base(probe: Probe) -> str:
    probe.require(probe.target.base_url is not None, "the consumer's site face is not known (--endpoints)")
    return str(probe.target.base_url).rstrip("/")


def _patient(probe: Probe) -> Patient:
    patient = make_patient(secrets.randbelow(10**6) + 3_000_000, sex="F", with_ins=True)
    probe.uses(f"INS traits of a test patient made up by the kit ({patient.ins})")
    return patient


def _post(probe: Probe, patient: Patient, title: str, **changes: str) -> tuple[int, str, str]:
    reply = probe.wire.request("POST", f"{_base(probe)}/contextual-call", headers=_FORM, auth=False, title=title,
                               content=urlencode(_form(patient, **changes)).encode())
    return reply.status, reply.text(), str(reply.headers.get("location", ""))


def _bad_key(ins: str) -> str:
    key = (int(ins[-2:]) + 1) % 100 or 1
    return f"{ins[:-2]}{key:02d}"


def _contextual_call(probe: Probe) -> None:
    patient = _patient(probe)
    ins = str(patient.ins)
    status, body, _ = _post(probe, patient, "contextual call, INS with a wrong control key",
                            **{"Patient.identifier.value": _bad_key(ins)})
    probe.check(status == 400, f"an INS with a wrong control key answered {status}, expected 400")
    probe.check(status != 400 or "Patient.identifier.value" in body or "INS" in body,
                "the 400 page does not name the INS field it refuses")
    status, _, _ = _post(probe, patient, "contextual call without consent", InformationEtConsentement="false")
    probe.check(status == 403, f"a call without the patient's consent answered {status}, expected 403")
    status, _, location = _post(probe, patient, "valid contextual call")
    probe.check(status == 303, f"a valid contextual call answered {status}, expected 303")
    probe.check(bool(location), "the 303 has no Location")
    probe.check(ins not in unquote(location) and patient.family not in unquote(location),
                f"the Location {location} carries the patient's identity")


def _portal_login(probe: Probe) -> None:
    patient = _patient(probe)
    status, _, location = _post(probe, patient, "valid contextual call")
    probe.require(status == 303 and bool(location), f"the valid contextual call answered {status}")
    page = urljoin(f"{_base(probe)}/", location)
    logged = probe.wire.get(page, headers={"Accept": "text/html", **_as_user(probe)}, auth=False,
                            title="the patient's page, logged in (bearer)")
    probe.check(logged.status == 200, f"the patient's page answered {logged.status} to a logged-in user")
    anonymous = probe.wire.get(page, auth=False, headers={"Accept": "text/html"},
                               title="the patient's page, not logged in")
    probe.check(anonymous.status in (302, 303, 307, 401), f"the patient's page answered {anonymous.status} "
                "without login, expected a redirect to the login or 401")
    probe.check(str(patient.ins) not in anonymous.text() and patient.family not in anonymous.text(),
                "the patient's page shows the patient's identity before login")


def _as_user(probe: Probe) -> dict[str, str]:
    return probe.wire.bearer(probe.data.consumer_token())


def _retrieved(probe: Probe, patient: Patient, kos_uid: str) -> None:
    """Contextual call → the patient's page lists the kit's exam → import it; wait until it is done."""
    status, _, location = _post(probe, patient, "contextual call for the kit's patient")
    probe.require(status == 303 and bool(location), f"the contextual call for the kit's patient answered {status}")
    page = urljoin(f"{_base(probe)}/", location)
    html = {"Accept": "text/html", **_as_user(probe)}
    listed = probe.wire.get(page, headers=html, auth=False, title="the kit's patient's page")
    probe.require(listed.status == 200, f"the patient's page answered {listed.status}")
    probe.require(f'data-kos="{kos_uid}"' in listed.text(),
                  f"the patient's page does not list the kit's exam (KOS {kos_uid})")
    started = probe.wire.request("POST", f"{page}/exams/{kos_uid}/import", headers=html, auth=False,
                                 title="import the kit's exam")
    probe.require(started.status == 303, f"the import answered {started.status}, expected 303 to its progress")
    job = urljoin(f"{_base(probe)}/", str(started.headers.get("location", "")))
    sink, probe.wire.sink = probe.wire.sink, lambda _: None  # polls are not evidence; the last one is
    deadline = time.monotonic() + probe.options.publish_timeout_s
    try:
        while time.monotonic() < deadline:
            state = _STATE.search(probe.wire.get(job, headers=html, auth=False).text())
            if state and state.group(1) in ("done", "incomplete", "failed"):
                break
            time.sleep(0.3)
    finally:
        probe.wire.sink = sink
    state = _STATE.search(probe.wire.get(job, headers=html, auth=False, title="the import's progress").text())
    ended = state.group(1) if state else "without a state"
    probe.require(ended == "done", f"the import of the kit's exam ended {ended}")


def _exported_instances(probe: Probe, path: Path) -> set[str]:
    """SOP Instance UIDs of the DICOM files in the XDM zip (a zip that does not open is a finding)."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        probe.check(False, f"the export is not a complete zip ({exc})")
        return set()
    found: set[str] = set()
    with archive:
        names = archive.namelist()
        probe.evidence("data", "the export's members", "\n".join(names[:200]))
        for name in names:
            with archive.open(name) as member:
                try:
                    ds = pydicom.dcmread(member, stop_before_pixels=True)
                except (InvalidDicomError, ValueError, EOFError, OSError):
                    continue  # the XDM index, the report, the stylesheet…
            if "SOPInstanceUID" in ds:
                found.add(str(ds.SOPInstanceUID))
    return found


def _export(probe: Probe) -> None:
    publication = probe.data.publication()
    kit = probe.data.study()
    kos_uid = str(publication.kos.SOPInstanceUID)
    probe.uses(f"kit-produced CT of {len(kit.study.files)} JPEG-LS images ({kit.bytes_total / 1e6:.1f} MB), KOS "
               f"{kos_uid}, imported by the consumer from its source through the portal")
    _retrieved(probe, kit.study.patient, kos_uid)
    spooled = probe.data.workdir / f"export-{kos_uid}.zip"  # on disk: an export is never held in memory
    started = time.perf_counter()
    total = 0
    with probe.wire.stream(f"{_base(probe)}/api/xdm/export?kos={kos_uid}", via="site", title="timed XDM export",
                           headers={"Accept": "application/zip"}, token=probe.data.consumer_token()) as response, \
            spooled.open("wb") as out:
        probe.require(response.status_code == 200, f"the XDM export answered {response.status_code}")
        for chunk in response.iter_bytes(65536):
            out.write(chunk)
            total += len(chunk)
    elapsed = time.perf_counter() - started
    found = _exported_instances(probe, spooled)
    spooled.unlink()
    probe.check(kit.sop_uids() <= found, f"the export holds {len(found & kit.sop_uids())} of the exam's "
                                         f"{len(kit.sop_uids())} instances")
    probe.figure("export throughput", total / 1e6 / max(elapsed, 1e-6), "MB/s",
                 threshold=probe.options.export_min_mb_s)
    probe.figure("export time", elapsed, "s")
    probe.figure("export size", total / 1e6, "MB")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("consumer.contextual-call", Family.CONSUMER, "Contextual call: 400 listing a bad INS key, 403 without "
             "consent, 303 without the INS in the Location", frozenset({Profile.CONSUMER}), _contextual_call,
             reference="DRIM-M appel contextuel (DESIGN F5)"),
    Scenario("consumer.portal-login", Family.CONSUMER, "The patient's page requires login and shows nothing before",
             frozenset({Profile.CONSUMER}), _portal_login, reference="DESIGN F6; §2b"),
    Scenario("perf.consumer.export", Family.PERFORMANCE, "Consumer: XDM export of the CT it imported through the "
             "portal (throughput, timed from outside)", frozenset({Profile.CONSUMER}), _export,
             reference="ANS informatif/Performances (DRIMBox consommatrice)"),
)
