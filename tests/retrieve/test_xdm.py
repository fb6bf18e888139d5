"""XDM (F10): export → read round trip, and every kind of hostile archive refused with a named problem.

Archives are real zips built with :mod:`zipfile` (no mocks): hostile ones are made by copying a
genuine export member by member and changing what an attacker would change.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath

import pydicom
import pytest
from lxml import etree
from lxml import html as lxml_html

from drimbox.errors import InvalidRequest
from drimbox.publish.xds.vocabulary import NS, SCHEME
from drimbox.retrieve.model import PatientTraits
from drimbox.retrieve.xdm import (
    DEFAULT_LIMITS,
    SUBSET,
    XdmContents,
    XdmLimits,
    XdmOrigin,
    XdmSummary,
    exam_from_directory,
    export_xdm,
    read_xdm,
)
from drimbox.testdata import INS_NIR_TEST_OID, Patient, make_patient, write_mammography_study

RIM = f"{{{NS['rim']}}}"
ORIGIN = XdmOrigin("site-b", "1.2.250.1.999.1", institution_name="CH Démo", institution_id="1123456789",
                   contact="imagerie@ch-demo.example, 01 23 45 67 89")
REPORT = b"<?xml version='1.0'?><ClinicalDocument xmlns='urn:hl7-org:v3'><title>CR</title></ClinicalDocument>"
NOW = datetime(2025, 1, 20, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def patient() -> Patient:
    return make_patient(41)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory, patient: Patient) -> Path:
    directory = tmp_path_factory.mktemp("study")
    write_mammography_study(directory, patient, size="small")
    return directory


@pytest.fixture(scope="module")
def traits(patient: Patient) -> PatientTraits:
    assert patient.ins is not None
    return PatientTraits(ins=patient.ins, ins_oid=INS_NIR_TEST_OID, birth_name=patient.family,
                         first_given_name=patient.given, birth_date=date(int(patient.birth_date[:4]),
                         int(patient.birth_date[4:6]), int(patient.birth_date[6:])), sex="F",
                         local_id=patient.ipp, local_issuer=patient.ipp_issuer)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, study_dir: Path,
             traits: PatientTraits) -> tuple[Path, XdmSummary, dict[str, Path]]:
    exam, files, kos = exam_from_directory(study_dir)
    archive = tmp_path_factory.mktemp("xdm") / "exam.zip"
    summary = export_xdm(exam, files, archive, origin=ORIGIN, traits=traits, report=REPORT, report_mime="text/xml",
                         kos=kos, now=NOW)
    return archive, summary, files


def _metadata(archive: Path) -> etree._Element:
    with zipfile.ZipFile(archive) as zf:
        return etree.fromstring(zf.read(f"{SUBSET}/METADATA.XML"))


def _slots(eo: etree._Element) -> dict[str, list[str]]:
    return {s.get("name"): [v.text for v in s.iter(f"{RIM}Value")] for s in eo.iterfind(f"{RIM}Slot")}


# -- export ------------------------------------------------------------------------------------------


def test_round_trip_gives_byte_identical_instances(exported: tuple[Path, XdmSummary, dict[str, Path]],
                                                   tmp_path: Path) -> None:
    archive, summary, files = exported
    contents = read_xdm(archive, tmp_path)
    assert set(contents.instances) == set(files)
    for sop, path in files.items():
        assert contents.instances[sop].read_bytes() == path.read_bytes()
    assert contents.kos_uid == summary.kos_uid
    assert contents.report is not None and contents.report.read_bytes() == REPORT
    assert contents.report_mime == "text/xml"
    assert contents.submission_set_uid == summary.submission_set_uid
    assert contents.patient_id.endswith(f"^^^&{INS_NIR_TEST_OID}&ISO^NH")
    assert contents.warnings == ()
    assert contents.directory.parent == tmp_path  # everything under the workdir


def test_metadata_is_ebrim_with_uri_hash_and_size_of_each_document(
        exported: tuple[Path, XdmSummary, dict[str, Path]], traits: PatientTraits) -> None:
    archive, summary, _ = exported
    root = _metadata(archive)
    assert root.tag == f"{{{NS['lcm']}}}SubmitObjectsRequest"
    package = root.find(f".//{RIM}RegistryPackage")
    assert package is not None
    entries = root.findall(f".//{RIM}ExtrinsicObject")
    assert [e.get("mimeType") for e in entries] == ["application/dicom", "text/xml"]
    associations = root.findall(f".//{RIM}Association")
    assert {a.get("targetObject") for a in associations} == {e.get("id") for e in entries}
    with zipfile.ZipFile(archive) as zf:
        for eo in entries:
            slots = _slots(eo)
            member = f"{SUBSET}/{slots['URI'][0]}"
            data = zf.read(member)
            assert slots["hash"] == [hashlib.sha1(data).hexdigest().upper()]  # noqa: S324
            assert slots["size"] == [str(len(data))]
            # Slots precede Name/Classification (ebRIM schema order), URI included.
            tags = [child.tag for child in eo]
            assert tags.index(f"{RIM}Name") > max(i for i, t in enumerate(tags) if t == f"{RIM}Slot")
            ids = {ei.get("identificationScheme"): ei.get("value") for ei in eo.iterfind(f"{RIM}ExternalIdentifier")}
            assert ids[SCHEME.DE_PATIENT_ID] == traits.xds_patient_id
    kos = entries[0]
    codes = {cl.get("classificationScheme"): cl.get("nodeRepresentation")
             for cl in kos.iterfind(f"{RIM}Classification")}
    assert codes[SCHEME.DE_TYPE] == "IMG-KOS"
    assert codes[SCHEME.DE_CLASS] == "31"
    assert codes[SCHEME.DE_FORMAT] == "1.2.840.10008.5.1.4.1.1.88.59"
    assert codes[SCHEME.DE_CONFIDENTIALITY] == "N"
    ids = {ei.get("identificationScheme"): ei.get("value") for ei in kos.iterfind(f"{RIM}ExternalIdentifier")}
    assert ids[SCHEME.DE_UNIQUE_ID] == summary.kos_uid
    slots = _slots(kos)
    assert slots["sourcePatientId"] == [f"{traits.local_id}^^^{traits.local_issuer}^PI"]
    references = slots["urn:ihe:iti:xds:2013:referenceIdList"]
    assert any(v.endswith("urn:ihe:iti:xds:2016:studyInstanceUID") for v in references)
    assert slots["sourcePatientInfo"][0].startswith(f"PID-5|{traits.birth_name}^")


def test_index_links_resolve_to_members_and_readme_names_the_origin(
        exported: tuple[Path, XdmSummary, dict[str, Path]]) -> None:
    archive, summary, files = exported
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        page = lxml_html.fromstring(zf.read("INDEX.HTM"))
        readme = zf.read("README.TXT").decode("utf-8")
    links = [a.get("href") for a in page.iter("a")]
    assert links and all(link in names for link in links)
    dicom_links = [link for link in links if "/DICOM/" in link]
    assert len(dicom_links) == len(files) == summary.instances
    assert {"README.TXT", "INDEX.HTM", f"{SUBSET}/METADATA.XML"} <= names
    assert "CH Démo" in readme and "imagerie@ch-demo.example" in readme and "4 DICOM instances" in readme


def test_export_streams_to_an_unseekable_destination(study_dir: Path, tmp_path: Path) -> None:
    """An HTTP response cannot seek: zipfile writes data descriptors, the archive still reads back."""

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            self.chunks.append(bytes(data))
            return len(data)

    exam, files, kos = exam_from_directory(study_dir)
    pipe = Pipe()
    export_xdm(exam, files, pipe, origin=ORIGIN, kos=kos, now=NOW)  # type: ignore[arg-type]
    archive = tmp_path / "piped.zip"
    archive.write_bytes(b"".join(pipe.chunks))
    contents = read_xdm(archive, tmp_path)
    assert set(contents.instances) == set(files)
    # Without traits the INS comes from the instances' OtherPatientIDsSequence.
    assert contents.patient_id.endswith(f"&{INS_NIR_TEST_OID}&ISO^NH")
    kos_ds = pydicom.dcmread(contents.kos) if contents.kos else None
    assert kos_ds is not None and kos_ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"


# -- hostile archives --------------------------------------------------------------------------------


Change = Callable[[zipfile.ZipInfo, bytes], Iterator[tuple[zipfile.ZipInfo, bytes]]]


def _rewrite(source: Path, target: Path, change: Change,
             extra: Sequence[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            for new_info, data in change(info, zin.read(info)):
                zout.writestr(new_info, data)
        for name, data in extra:
            zout.writestr(name, data)
    return target


def _same(info: zipfile.ZipInfo, data: bytes) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
    yield info, data


def _refused(archive: Path, workdir: Path, *, limits: XdmLimits = DEFAULT_LIMITS) -> tuple[str, ...]:
    with pytest.raises(InvalidRequest) as caught:
        read_xdm(archive, workdir, limits=limits)
    assert list(workdir.iterdir()) == [], "nothing may remain extracted from a refused archive"
    return caught.value.problems


def _has(problems: tuple[str, ...], text: str) -> bool:
    return any(text in p for p in problems)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


def test_zip_bomb_member_refused_before_inflating(exported: tuple[Path, XdmSummary, dict[str, Path]],
                                                  tmp_path: Path, workdir: Path) -> None:
    archive, _, _ = exported
    bomb = zipfile.ZipInfo(f"{SUBSET}/DICOM/S0009/I00001.DCM")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    hostile = _rewrite(archive, tmp_path / "bomb.zip", _same, [(bomb, bytes(32 * 1024 * 1024))])
    assert hostile.stat().st_size < 1024 * 1024  # 32 MiB of zeros deflate to ~32 KiB
    problems = _refused(hostile, workdir)
    assert _has(problems, "zip bomb, compression ratio")


def test_total_and_member_size_limits(exported: tuple[Path, XdmSummary, dict[str, Path]], workdir: Path) -> None:
    archive, _, _ = exported
    problems = _refused(archive, workdir, limits=XdmLimits(max_total_bytes=200_000, max_member_bytes=100_000))
    assert _has(problems, "zip bomb: members inflate to")
    assert _has(problems, "too large, inflates to")


def test_too_many_members(exported: tuple[Path, XdmSummary, dict[str, Path]], workdir: Path) -> None:
    archive, _, _ = exported
    assert _has(_refused(archive, workdir, limits=XdmLimits(max_members=5)), "too many members")


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/cron.d/evil", "path traversal"),
    (f"{SUBSET}/DICOM/../../../evil.DCM", "path traversal"),
    ("..\\..\\evil.DCM", "path traversal"),
    ("/etc/passwd", "absolute path"),
    ("C:/Windows/evil.DCM", "drive letter"),
])
def test_path_traversal_and_absolute_paths(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path,
                                           workdir: Path, name: str, expected: str) -> None:
    archive, _, _ = exported
    hostile = _rewrite(archive, tmp_path / "hostile.zip", _same, [(name, b"x")])
    assert _has(_refused(hostile, workdir), expected)
    assert not (tmp_path / "evil.DCM").exists()


def test_symlink_member(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path, workdir: Path) -> None:
    archive, _, _ = exported
    link = zipfile.ZipInfo(f"{SUBSET}/DICOM/S0001/LINK.DCM")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    hostile = _rewrite(archive, tmp_path / "link.zip", _same, [(link, b"/etc/shadow")])
    assert _has(_refused(hostile, workdir), "symbolic link member")


def _set_encrypted(archive: Path, name: str) -> None:
    """Set the 'encrypted' flag of one member in its local header and its central record.

    zipfile clears ``flag_bits`` when it writes, so an encrypted-looking member is made by patching bytes.
    """
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
    data[info.header_offset + 6] |= 0x1
    record = data.find(b"PK\x01\x02")
    while record != -1:
        name_len = int.from_bytes(data[record + 28: record + 30], "little")
        if data[record + 46: record + 46 + name_len] == name.encode():
            data[record + 8] |= 0x1
        record = data.find(b"PK\x01\x02", record + 4)
    archive.write_bytes(bytes(data))


def test_encrypted_and_duplicate_members(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path,
                                         workdir: Path) -> None:
    archive, _, _ = exported

    def change(info: zipfile.ZipInfo, data: bytes) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
        yield info, data
        if info.filename.endswith("I00003.DCM"):
            yield zipfile.ZipInfo(info.filename.lower()), b"not the same file"

    hostile = _rewrite(archive, tmp_path / "enc.zip", change)
    _set_encrypted(hostile, f"{SUBSET}/DICOM/S0001/I00002.DCM")
    problems = _refused(hostile, workdir)
    assert _has(problems, "encrypted member")
    assert _has(problems, "duplicate name")


def test_missing_metadata(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path, workdir: Path) -> None:
    archive, _, _ = exported

    def drop(info: zipfile.ZipInfo, data: bytes) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
        if not info.filename.endswith("METADATA.XML"):
            yield info, data

    assert _has(_refused(_rewrite(archive, tmp_path / "nometa.zip", drop), workdir), "missing IHE_XDM/")


def test_metadata_not_parseable_or_naming_an_absent_file(exported: tuple[Path, XdmSummary, dict[str, Path]],
                                                         tmp_path: Path, workdir: Path) -> None:
    archive, _, _ = exported

    def garble(info: zipfile.ZipInfo, data: bytes) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
        yield info, data[:200] if info.filename.endswith("METADATA.XML") else data

    assert _has(_refused(_rewrite(archive, tmp_path / "garbled.zip", garble), workdir), "not parseable")

    def entity_bomb(info: zipfile.ZipInfo, data: bytes) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
        if info.filename.endswith("METADATA.XML"):
            data = data.replace(b"<lcm:Submit", b'<!DOCTYPE x [<!ENTITY a "aaaaaaaa">]>\n<lcm:Submit', 1)
            data = data.replace(b"<?xml version='1.0' encoding='UTF-8'?>\n", b"<?xml version='1.0'?>\n", 1)
        yield info, data

    assert _has(_refused(_rewrite(archive, tmp_path / "doctype.zip", entity_bomb), workdir), "DOCTYPE")

    def drop_report(info: zipfile.ZipInfo, data: bytes) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
        if not info.filename.endswith("DOC00002.XML"):
            yield info, data

    problems = _refused(_rewrite(archive, tmp_path / "noreport.zip", drop_report), workdir)
    assert _has(problems, "refers to 'DOC00002.XML', absent from the archive")


def test_hash_and_size_mismatch(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path,
                                workdir: Path) -> None:
    archive, _, _ = exported

    def tamper(info: zipfile.ZipInfo, data: bytes) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
        yield info, data.replace(b"<title>CR</title>", b"<title>XX</title>") if info.filename.endswith(".XML") \
            and "DOC" in info.filename else data

    problems = _refused(_rewrite(archive, tmp_path / "tampered.zip", tamper), workdir)
    assert _has(problems, "hash mismatch") and not _has(problems, "size mismatch")

    def grow(info: zipfile.ZipInfo, data: bytes) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
        yield info, data + b"\n" if info.filename.endswith("DOC00002.XML") else data

    problems = _refused(_rewrite(archive, tmp_path / "grown.zip", grow), workdir)
    assert _has(problems, "size mismatch") and _has(problems, "hash mismatch")


def test_non_dicom_where_dicom_is_declared(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path,
                                           workdir: Path) -> None:
    archive, _, _ = exported

    def swap(info: zipfile.ZipInfo, data: bytes) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
        yield info, b"MZ\x90\x00 this is a Windows program, not an image" * 10 if info.filename.endswith(
            "I00004.DCM") else data

    problems = _refused(_rewrite(archive, tmp_path / "notdicom.zip", swap), workdir)
    assert _has(problems, "I00004.DCM") and _has(problems, "not DICOM")


def test_truncated_and_corrupt_archives(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path,
                                        workdir: Path) -> None:
    archive, _, _ = exported
    data = archive.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    assert _has(_refused(truncated, workdir), "not a zip archive, or truncated")
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04" + bytes(1000))
    assert _has(_refused(garbage, workdir), "not a zip archive")
    # A flipped byte inside an instance's compressed data: the CRC (or inflate) catches it at extraction.
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(f"{SUBSET}/DICOM/S0001/I00002.DCM")
    corrupt = bytearray(data)
    offset = info.header_offset + 30 + len(info.filename) + 200
    corrupt[offset] ^= 0xFF
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(corrupt))
    assert _has(_refused(damaged, workdir), "I00002.DCM': cannot be extracted, corrupt member")


def test_overlapping_members_refused(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path,
                                     workdir: Path) -> None:
    """Two central entries pointing at one member's data (the 'overlapping files' bomb construction)."""
    archive, _, _ = exported
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        first = zf.getinfo(f"{SUBSET}/DICOM/S0001/I00001.DCM")
        second = zf.getinfo(f"{SUBSET}/DICOM/S0001/I00002.DCM")
    # Find the central directory record of the second member and point its offset at the first.
    name = second.filename.encode()
    record = data.find(b"PK\x01\x02", 0)
    while record != -1:
        name_len = int.from_bytes(data[record + 28: record + 30], "little")
        if data[record + 46: record + 46 + name_len] == name:
            data[record + 42: record + 46] = first.header_offset.to_bytes(4, "little")
            break
        record = data.find(b"PK\x01\x02", record + 4)
    assert record != -1
    hostile = tmp_path / "overlap.zip"
    hostile.write_bytes(bytes(data))
    problems = _refused(hostile, workdir)
    assert _has(problems, "local header names another file")
    assert _has(problems, "zip bomb, data overlaps")


def test_refused_archive_lists_every_problem(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path,
                                             workdir: Path) -> None:
    archive, _, _ = exported
    link = zipfile.ZipInfo("escape")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    hostile = _rewrite(archive, tmp_path / "many.zip", _same, [("../up", b"x"), ("/abs", b"y"), (link, b"/")])
    problems = _refused(hostile, workdir)
    assert _has(problems, "path traversal") and _has(problems, "absolute path") and _has(problems, "symbolic link")


def _summary_members(summary: XdmSummary) -> set[str]:
    return {PurePosixPath(m).name for m in summary.members}


def test_contents_type(exported: tuple[Path, XdmSummary, dict[str, Path]], tmp_path: Path) -> None:
    archive, summary, _ = exported
    contents = read_xdm(archive, tmp_path)
    assert isinstance(contents, XdmContents)
    assert {"KOS00001.DCM", "DOC00002.XML", "METADATA.XML"} <= _summary_members(summary)
