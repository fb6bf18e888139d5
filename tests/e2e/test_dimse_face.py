"""The node's DIMSE face for studies of the network, against the running demo network.

A NodeScp with the :class:`DimseFace` runs in-process as site B (its settings, the real registry
directory, the real retriever over mutual TLS to site A's network face) on its own port of 127.0.0.3.
The workstation is real DCMTK: ``findscu``/``movescu`` as the querying AE and ``storescp`` as the move
destination; pynetdicom is the SCU where a JWT user identity must be negotiated (DCMTK's tools do not
send one).

The tests run in file order and share one face: before any identified move, an anonymous query sees
nothing; an identified C-MOVE retrieves the current mammography from site A; from then on the copy is
what anonymous callers see.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import Dataset
from pydicom.multival import MultiValue
from pynetdicom import AE
from pynetdicom.pdu_primitives import UserIdentityNegotiation

from drimbox.config import LocalAE, RemoteAE
from drimbox.devnet.dcmtk import dcmtk_env, dcmtk_tool
from drimbox.devnet.ports import free_port, wait_for_port
from drimbox.node import build_verifier
from drimbox.pacs import MoveMediator, NodeScp
from drimbox.pacs.contexts import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE, sop_classes_for_modality
from drimbox.reports import INS_NIR_OID, INS_NIR_TEST_OID
from drimbox.retrieve.dimse_face import NOT_AUTHORISED, DimseFace
from drimbox.retrieve.directory import RegistryDirectory
from drimbox.retrieve.model import Exam
from drimbox.retrieve.transfer import StudyRetriever
from drimbox.trust.audit import AuditStore
from drimbox.trust.peers import HostListPolicy
from tests.e2e.conftest import Net
from tests.e2e.exams import published_exams

WORKSTATION = "WS1"
NODE_AET = "DRIMBOX_B_QR"


@dataclass
class Face:
    """The face under test, its workstation (storescp) and what they wrote."""

    node: LocalAE
    face: DimseFace
    audit: AuditStore
    work_dir: Path
    received: Path
    storescp_port: int


@pytest.fixture(scope="module")
def face(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Face]:
    tmp = tmp_path_factory.mktemp("dimse-face")
    settings = net.settings("site-b", storage={"data_dir": str(tmp / "data")})
    received = tmp / "ws1"
    received.mkdir()
    store_port = free_port("127.0.0.1")
    storescp = subprocess.Popen([dcmtk_tool("storescp"), "-aet", WORKSTATION, "-od", str(received), str(store_port)],
                                env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    audit = AuditStore(tmp / "audit.sqlite")
    directory = RegistryDirectory.from_settings(settings)
    retriever = StudyRetriever(settings, HostListPolicy(settings.peers.hosts))
    work_dir = settings.storage.data_dir / "retrieved"
    dimse_face = DimseFace(aet=NODE_AET, workstations=(RemoteAE(aet=WORKSTATION, host="127.0.0.1", port=store_port),),
                           audit=audit, work_dir=work_dir, verifier=build_verifier(settings), directory=directory,
                           retriever=retriever, ins_oids=(INS_NIR_OID, INS_NIR_TEST_OID))
    node = LocalAE(aet=NODE_AET, host="127.0.0.3", port=free_port("127.0.0.3"))
    mediator = MoveMediator(quarantine_dir=settings.storage.quarantine_dir)
    scp = NodeScp(node, settings.dimse, settings.storage, mediator, services=[dimse_face])
    try:
        wait_for_port("127.0.0.1", store_port, 10)
        scp.start()
        yield Face(node, dimse_face, audit, work_dir, received, store_port)
    finally:
        scp.stop()
        dimse_face.close()
        retriever.close()
        directory.close()
        audit.close()
        storescp.terminate()
        storescp.wait(10)


@pytest.fixture(scope="module")
def mammographies(net: Net) -> list[Exam]:
    """The two screening mammography exams (current and prior) site A published, as their KOS say."""
    exams = published_exams(net.endpoints["registry"]["fhir"], net.token(), net.screened_patient)
    assert len(exams) == 2
    return exams


# -- SCUs -----------------------------------------------------------------------------------------------------


def _identity(token: str) -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = 5  # JSON Web Token
    item.primary_field = token.encode()
    return item


def _scu(face: Face, token: str | None, calling: str = WORKSTATION) -> Any:
    ae = AE(ae_title=calling)
    for model in (STUDY_ROOT_FIND, STUDY_ROOT_MOVE):
        ae.add_requested_context(model)
    ext = [_identity(token)] if token else []
    assoc = ae.associate(face.node.host, face.node.port, ae_title=face.node.aet, ext_neg=ext)
    assert assoc.is_established
    return assoc


def _find(face: Face, identifier: Dataset, token: str | None = None) -> tuple[list[Dataset], Dataset]:
    """Pynetdicom C-FIND with an optional JWT identity: the matches and the final status."""
    assoc = _scu(face, token)
    matches: list[Dataset] = []
    final = Dataset()
    try:
        for status, found in assoc.send_c_find(identifier, STUDY_ROOT_FIND):
            assert status is not None, "no response"
            if status.Status in (0xFF00, 0xFF01):
                matches.append(found)
            else:
                final = status
    finally:
        assoc.release()
    return matches, final


def _move(face: Face, identifier: Dataset, token: str | None, destination: str = WORKSTATION) -> list[Dataset]:
    assoc = _scu(face, token)
    try:
        return [status for status, _ in assoc.send_c_move(identifier, destination, STUDY_ROOT_MOVE)]
    finally:
        assoc.release()


def _study_query(ins: str, oid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = ins
    if oid is not None:
        item = Dataset()
        item.UniversalEntityID = oid
        item.UniversalEntityIDType = "ISO"
        ds.IssuerOfPatientIDQualifiersSequence = [item]
    for keyword in ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
                    "StudyDescription", "PatientName", "InstitutionName", "RetrieveAETitle"):
        setattr(ds, keyword, "")
    ds.NumberOfStudyRelatedSeries = None
    ds.NumberOfStudyRelatedInstances = None
    return ds


def _dcmtk(tool: str, face: Face, *args: str, calling: str = WORKSTATION, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([dcmtk_tool(tool), "-v", "-S", "-aet", calling, "-aec", face.node.aet, *args,
                           face.node.host, str(face.node.port)],
                          env=dcmtk_env(), capture_output=True, text=True, timeout=300, check=False, cwd=cwd)


def _dcmtk_find(face: Face, out: Path, *keys: str, calling: str = WORKSTATION) -> tuple[list[Dataset], str]:
    """DCMTK findscu, responses extracted to files: the matches and the tool's log."""
    out.mkdir(parents=True, exist_ok=True)
    args = ["-X", "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    done = _dcmtk("findscu", face, *args, calling=calling)
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))], done.stdout + done.stderr


def _received(face: Face) -> dict[str, Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p, stop_before_pixels=True)
                                                  for p in face.received.iterdir() if p.is_file())}


def _clear_received(face: Face) -> None:
    for path in face.received.iterdir():
        path.unlink()


# -- tests -----------------------------------------------------------------------------------------------------


def test_find_by_ins_lists_both_mammographies(net: Net, face: Face, mammographies: list[Exam]) -> None:
    patient = net.screened_patient
    matches, final = _find(face, _study_query(patient.ins, patient.ins_oid), net.token())
    assert final.Status == 0x0000
    by_study = {str(m.StudyInstanceUID): m for m in matches}
    assert set(by_study) == {e.study_uid for e in mammographies}
    for exam in mammographies:
        answer = by_study[exam.study_uid]
        assert answer.PatientID == patient.ins
        assert answer.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == patient.ins_oid
        assert int(answer.NumberOfStudyRelatedSeries) == exam.series_count
        assert int(answer.NumberOfStudyRelatedInstances) == exam.instance_count
        modalities = answer.ModalitiesInStudy
        assert "MG" in (modalities if isinstance(modalities, MultiValue) else [modalities])
        assert answer.RetrieveAETitle == NODE_AET
        assert answer.InstitutionName  # the source site
        assert len(str(answer.StudyDate)) == 8
        assert (answer.AccessionNumber or None) == exam.accession_number
    # No OID in the query: the configured namespaces are tried (the demo's INS are in the test one).
    ds = _study_query(patient.ins)
    ds.ModalitiesInStudy = "MG"
    again, _ = _find(face, ds, net.token())
    assert {str(m.StudyInstanceUID) for m in again} == set(by_study)
    audited = [e for e in face.audit.events(action="dimse.find") if e.patient_ins == patient.ins]
    assert audited and audited[-1].outcome == "success" and audited[-1].rpps == "10101010101"


def test_series_level_within_a_study(net: Net, face: Face, mammographies: list[Exam]) -> None:
    exam = mammographies[0]
    _find(face, _study_query(net.screened_patient.ins, net.screened_patient.ins_oid), net.token())
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = exam.study_uid
    ds.SeriesInstanceUID = ""
    ds.Modality = ""
    ds.NumberOfSeriesRelatedInstances = None
    matches, final = _find(face, ds, net.token())
    assert final.Status == 0x0000
    assert {str(m.SeriesInstanceUID): int(m.NumberOfSeriesRelatedInstances) for m in matches} == \
        {s.series_uid: len(s.instances) for s in exam.series}


def test_unknown_calling_ae_is_refused(net: Net, face: Face, tmp_path: Path) -> None:
    patient = net.screened_patient
    matches, log = _dcmtk_find(face, tmp_path, "QueryRetrieveLevel=STUDY", f"PatientID={patient.ins}",
                               "StudyInstanceUID", calling="INTRUDER")
    assert matches == []
    assert "Failed: UnableToProcess" in log, log
    # Even with a valid practitioner token: the AE is what the site listed.
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(STUDY_ROOT_FIND)
    assoc = ae.associate(face.node.host, face.node.port, ae_title=face.node.aet, ext_neg=[_identity(net.token())])
    try:
        statuses = [s.Status for s, _ in assoc.send_c_find(_study_query(patient.ins, patient.ins_oid),
                                                            STUDY_ROOT_FIND)]
    finally:
        assoc.release()
    assert statuses == [NOT_AUTHORISED]
    refusals = [e for e in face.audit.events(action="dimse.find") if e.outcome == "refused"]
    assert any("INTRUDER" in (e.source or "") for e in refusals)


def test_invalid_token_is_refused_not_downgraded(net: Net, face: Face) -> None:
    patient = net.screened_patient
    _, final = _find(face, _study_query(patient.ins, patient.ins_oid), net.token()[:-4] + "AAAA")
    assert final.Status == NOT_AUTHORISED
    assert "identity" in str(final.get("ErrorComment", ""))


def test_without_identity_nothing_before_a_retrieval(net: Net, face: Face, mammographies: list[Exam],
                                                      tmp_path: Path) -> None:
    patient = net.screened_patient
    matches, log = _dcmtk_find(face, tmp_path, "QueryRetrieveLevel=STUDY", f"PatientID={patient.ins}",
                               "StudyInstanceUID")
    assert matches == [], log
    moved = _dcmtk("movescu", face, "-aem", WORKSTATION, "-k", "QueryRetrieveLevel=STUDY",
                   "-k", f"StudyInstanceUID={mammographies[0].study_uid}")
    assert "UnableToProcess" in moved.stdout + moved.stderr, moved.stdout + moved.stderr
    assert _received(face) == {}


def test_move_with_identity_delivers_every_instance(net: Net, face: Face, mammographies: list[Exam]) -> None:
    exam = mammographies[0]
    _clear_received(face)
    _find(face, _study_query(net.screened_patient.ins, net.screened_patient.ins_oid), net.token())
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = exam.study_uid
    statuses = _move(face, ds, net.token())
    final = statuses[-1]
    assert final.Status == 0x0000, final
    assert int(final.NumberOfCompletedSuboperations) == exam.instance_count
    assert int(final.get("NumberOfFailedSuboperations", 0)) == 0
    assert any(s.Status == 0xFF00 for s in statuses[:-1])  # pending responses with counts
    got = _received(face)
    assert set(got) == exam.sop_instance_uids()
    assert {str(d.StudyInstanceUID) for d in got.values()} == {exam.study_uid}
    # The retrieval left its copy where later anonymous callers find it.
    assert len(list((face.work_dir / exam.kos_uid).rglob("*.dcm"))) == exam.instance_count
    event = next(e for e in reversed(list(face.audit.events(action="dimse.move"))) if e.study_uid == exam.study_uid)
    assert event.outcome == "success" and set(event.sop_instance_uids) == exam.sop_instance_uids()
    assert event.kos_uid == exam.kos_uid and event.rpps == "10101010101"


def test_without_identity_only_the_retrieved_study(net: Net, face: Face, mammographies: list[Exam],
                                                   tmp_path: Path) -> None:
    current, prior = mammographies
    patient = net.screened_patient
    matches, log = _dcmtk_find(face, tmp_path, "QueryRetrieveLevel=STUDY", f"PatientID={patient.ins}",
                               "StudyInstanceUID", "NumberOfStudyRelatedInstances", "PatientName")
    assert [str(m.StudyInstanceUID) for m in matches] == [current.study_uid], log
    assert int(matches[0].NumberOfStudyRelatedInstances) == current.instance_count
    assert str(matches[0].PatientName)  # read from the retrieved instances
    # The prior was never retrieved: an anonymous move of it is refused, nothing is sent.
    _clear_received(face)
    refused = _dcmtk("movescu", face, "-aem", WORKSTATION, "-k", "QueryRetrieveLevel=STUDY",
                     "-k", f"StudyInstanceUID={prior.study_uid}")
    assert _received(face) == {}, refused.stdout + refused.stderr
    # The retrieved one moves with DCMTK's movescu, from the copy.
    moved = _dcmtk("movescu", face, "-aem", WORKSTATION, "-k", "QueryRetrieveLevel=STUDY",
                   "-k", f"StudyInstanceUID={current.study_uid}")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert set(_received(face)) == current.sop_instance_uids()


def test_unknown_move_destination(net: Net, face: Face, mammographies: list[Exam]) -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = mammographies[0].study_uid
    statuses = _move(face, ds, net.token(), destination="NOBODY")
    assert [s.Status for s in statuses] == [0xA801]
    moved = _dcmtk("movescu", face, "-aem", "NOBODY", "-k", "QueryRetrieveLevel=STUDY",
                   "-k", f"StudyInstanceUID={mammographies[0].study_uid}")
    assert "MoveDestinationUnknown" in moved.stdout + moved.stderr or "a801" in (moved.stdout + moved.stderr).lower()
    assert any(e.outcome == "refused" and "NOBODY" in e.detail for e in face.audit.events(action="dimse.move"))


def test_get_of_the_retrieved_study(net: Net, face: Face, mammographies: list[Exam]) -> None:
    from pynetdicom import build_role, evt

    exam = mammographies[0]
    got: dict[str, str] = {}

    def on_store(event: Any) -> int:
        got[str(event.request.AffectedSOPInstanceUID)] = str(event.request.AffectedSOPClassUID)
        return 0x0000

    ae = AE(ae_title=WORKSTATION)
    ae.add_requested_context(STUDY_ROOT_GET)
    classes = sop_classes_for_modality("MG")
    for uid in classes:
        ae.add_requested_context(uid)
    assoc = ae.associate(face.node.host, face.node.port, ae_title=face.node.aet,
                         ext_neg=[build_role(uid, scp_role=True) for uid in classes],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = exam.study_uid
    try:
        statuses = [s for s, _ in assoc.send_c_get(ds, STUDY_ROOT_GET)]
    finally:
        assoc.release()
    assert statuses[-1].Status == 0x0000, statuses[-1]
    assert set(got) == exam.sop_instance_uids()


def test_find_keeps_patients_apart(net: Net, face: Face, mammographies: list[Exam]) -> None:
    ct = net.ct_patient
    matches, final = _find(face, _study_query(ct.ins, ct.ins_oid), net.token())
    assert final.Status == 0x0000
    assert len(matches) == 1 and str(matches[0].PatientID) == ct.ins
    assert str(matches[0].StudyInstanceUID) not in {e.study_uid for e in mammographies}
    # An INS with a wrong key is no INS: nothing is asked of the registry on its behalf.
    wrong = ct.ins[:13] + f"{(int(ct.ins[13:]) % 97) + 1:02d}"
    none, final = _find(face, _study_query(wrong, ct.ins_oid), net.token())
    assert none == [] and final.Status == 0x0000
