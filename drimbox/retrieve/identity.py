"""Patient identity of retrieved instances, reconciled to the local PACS before import (F8, IHE IRWF.b).

Why: instances come from another site, identified as *its* PACS knows the patient (its IPP as
PatientID, the INS in OtherPatientIDsSequence when qualified). The local PACS files them by its own
conventions, chosen by ``[retrieve] identity_rule``:

- ``ins``: PatientID = the INS, IssuerOfPatientID ``ASIP-SANTE-INS-NIR``, and the INS namespace OID
  in IssuerOfPatientIDQualifiersSequence (UniversalEntityID, type ISO) — as in the KOS (DESIGN §3);
- ``local``: PatientID = the local IPP given by the contextual call (``PatientTraits.local_id``),
  IssuerOfPatientID its issuer (``local_issuer`` of the call, else ``retrieve.local_issuer``); the INS
  triple is kept in OtherPatientIDsSequence.

In both, PatientName/BirthDate/Sex take the strict INS traits when they are known. Every attribute
changed is recorded, with its previous value, in a new OriginalAttributesSequence (0400,0561) item
(reason ``COERCE``, PS3.3 C.12.1.1.9), so the source's identity can always be recovered.

Never silently mix two patients: an import is refused (:class:`~drimbox.errors.ImportFailed`,
nothing sent) when its instances name different patients, or when their INS is not the INS of the
patient the user is looking at. The check reads every header before any file is rewritten.

Files are rewritten one at a time and streamed: the header is read up to the pixel data, re-encoded
with the changes, and the rest of the file (the pixel data, compressed or not) is copied byte for
byte — never decoded, never held in memory.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import DeflatedExplicitVRLittleEndian

from drimbox.errors import ImportFailed
from drimbox.retrieve.model import PatientTraits

__all__ = [
    "INS_ISSUER",
    "INS_OIDS",
    "IdentityPlan",
    "SourceIdentity",
    "plan_identity",
    "read_source_identity",
    "reconcile_file",
]

INS_ISSUER = "ASIP-SANTE-INS-NIR"
"""IssuerOfPatientID of the INS in DRIM-M (DESIGN §3)."""
INS_OIDS = frozenset({"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"})
"""INS-NIR, INS-NIA, INS-NIR test, demo."""

Rule = Literal["ins", "local"]

_IDENTITY_KEYWORDS = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientBirthDate", "PatientSex", "OtherPatientIDsSequence",
)  # fmt: skip


# -- reading what the source says --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """Who one instance says its patient is."""

    patient_id: str
    issuer: str
    ins: str | None
    ins_oid: str | None
    name: str
    birth_date: str

    @property
    def key(self) -> tuple[str, str]:
        """What makes two instances the same patient: the INS when they carry one, else PatientID + issuer."""
        return ("INS", self.ins) if self.ins else (f"PID/{self.issuer}", self.patient_id)

    def describe(self) -> str:
        who = f"INS {self.ins}" if self.ins else f"PatientID {self.patient_id!r} (issuer {self.issuer or '-'})"
        return f"{who}, {self.name or 'no name'}, born {self.birth_date or '?'}"


def _oid_of(item: Dataset) -> str | None:
    for qualifier in item.get("IssuerOfPatientIDQualifiersSequence", []):
        value = qualifier.get("UniversalEntityID")
        if value:
            return str(value)
    return None


def _is_ins(item: Dataset) -> bool:
    return str(item.get("IssuerOfPatientID", "")) == INS_ISSUER or (_oid_of(item) or "") in INS_OIDS


def _identity_of(ds: Dataset) -> SourceIdentity:
    ins = ins_oid = None
    for candidate in [ds, *ds.get("OtherPatientIDsSequence", [])]:
        if candidate.get("PatientID") and _is_ins(candidate):
            ins, ins_oid = str(candidate.PatientID).strip(), _oid_of(candidate)
            break
    return SourceIdentity(
        patient_id=str(ds.get("PatientID", "") or "").strip(),
        issuer=str(ds.get("IssuerOfPatientID", "") or "").strip(),
        ins=ins,
        ins_oid=ins_oid,
        name=str(ds.get("PatientName", "") or ""),
        birth_date=str(ds.get("PatientBirthDate", "") or ""),
    )


def read_source_identity(path: Path) -> SourceIdentity:
    """The patient identity in one file's header (pixel data not read)."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=list(_IDENTITY_KEYWORDS))
    except (OSError, InvalidDicomError, EOFError) as exc:
        raise ImportFailed(f"{path.name}: not a readable DICOM file ({exc})", failed=(path.name,)) from exc
    return _identity_of(ds)


# -- deciding what the instances become ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdentityPlan:
    """The identity every instance of one import gets (same for all of them)."""

    rule: Rule
    patient_id: str
    issuer: str
    issuer_oid: str | None
    """IssuerOfPatientIDQualifiersSequence UniversalEntityID (the INS OID under rule ``ins``)."""
    ins: str
    ins_oid: str
    name: str | None
    birth_date: str | None
    sex: str | None
    source: SourceIdentity
    """The (single) identity the instances had."""


def _mismatch(why: str, source: SourceIdentity, traits: PatientTraits | None) -> ImportFailed:
    wanted = f"; the patient of this import is INS {traits.ins} ({traits.birth_name} {traits.first_given_name}, " \
             f"born {traits.birth_date.isoformat()})" if traits is not None else ""
    return ImportFailed(f"identity check refused the import: {why} — the instances name {source.describe()}{wanted}")


def plan_identity(
    identities: Sequence[tuple[str, SourceIdentity]],
    traits: PatientTraits | None,
    *,
    rule: Rule,
    local_issuer: str = "",
) -> IdentityPlan:
    """Check that ``identities`` ((file name, identity) of every instance) are one patient, the one of
    ``traits`` when given, and decide the identity they get under ``rule``.

    Raises
    ------
    ImportFailed
        Instances of several patients; an INS other than the traits'; a birth date other than the
        traits' for instances without INS; no INS to use under rule ``ins``; no local id under rule
        ``local``. Nothing has been written or sent.
    """
    if not identities:
        raise ImportFailed("nothing to import")
    by_key: dict[tuple[str, str], list[str]] = {}
    for file_name, identity in identities:
        by_key.setdefault(identity.key, []).append(file_name)
    if len(by_key) > 1:
        groups = "; ".join(
            f"{next(i.describe() for n, i in identities if i.key == key)}: {len(names)} file(s), e.g. {names[0]}"
            for key, names in by_key.items()
        )
        raise ImportFailed(f"identity check refused the import: its instances name {len(by_key)} different "
                           f"patients ({groups})", failed=tuple(n for n, _ in identities))
    source = identities[0][1]
    if traits is not None:
        if source.ins is not None:
            if source.ins != traits.ins:
                raise _mismatch("the instances' INS is not the patient's", source, traits)
            if source.ins_oid and source.ins_oid != traits.ins_oid:
                raise _mismatch(f"the instances' INS namespace {source.ins_oid} is not the patient's "
                                f"({traits.ins_oid})", source, traits)
        elif source.birth_date and traits.birth_date != date.min \
                and source.birth_date != traits.birth_date.strftime("%Y%m%d"):
            raise _mismatch("the instances carry no INS and their birth date is not the patient's", source, traits)
    ins = traits.ins if traits is not None else source.ins
    ins_oid = traits.ins_oid if traits is not None else source.ins_oid
    if not ins or not ins_oid:
        raise ImportFailed("identity check refused the import: no INS is known for this patient (the instances "
                           "carry none with its namespace OID, and no patient traits were given)")
    name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    if traits is not None:  # traits not known (empty name, date.min, "U") leave the source's values
        if traits.birth_name:
            name = f"{traits.birth_name}^{traits.first_given_name}"
        if traits.birth_date != date.min:
            birth_date = traits.birth_date.strftime("%Y%m%d")
        sex = {"M": "M", "F": "F"}.get(traits.sex)
    if rule == "ins":
        return IdentityPlan(rule, ins, INS_ISSUER, ins_oid, ins, ins_oid, name, birth_date, sex, source)
    local_id = traits.local_id if traits is not None else None
    if not local_id:
        raise ImportFailed("identity rule 'local' needs the patient's local identifier (IPP): the contextual call "
                           "gave none (PatientID); give it, or set retrieve.identity_rule = \"ins\"")
    issuer = (traits.local_issuer if traits is not None and traits.local_issuer else local_issuer).strip()
    return IdentityPlan(rule, local_id, issuer, None, ins, ins_oid, name, birth_date, sex, source)


# -- rewriting one file ------------------------------------------------------------------------------------


def _ins_item(plan: IdentityPlan) -> Dataset:
    qualifier = Dataset()
    qualifier.UniversalEntityID = plan.ins_oid
    qualifier.UniversalEntityIDType = "ISO"
    item = Dataset()
    item.PatientID = plan.ins
    item.IssuerOfPatientID = INS_ISSUER
    item.IssuerOfPatientIDQualifiersSequence = DicomSequence([qualifier])
    item.TypeOfPatientID = "TEXT"
    return item


def _same(old: DataElement | None, new: DataElement | None) -> bool:
    if old is None or new is None:
        return old is None and new is None
    if old.VR == "SQ" or new.VR == "SQ":
        return old.VR == new.VR and list(old.value or []) == list(new.value or [])
    return str(old.value if old.value is not None else "") == str(new.value if new.value is not None else "")


def _fits(text: str, ds: Dataset) -> bool:
    """Whether ``text`` can be written in the data set's character set (else it must become UTF-8)."""
    charset = ds.get("SpecificCharacterSet") or "ISO_IR 6"
    encodings = {str(e) for e in ([charset] if isinstance(charset, str) else charset) if e}
    if "ISO_IR 192" in encodings or text.isascii():
        return True
    if encodings and encodings <= {"ISO_IR 100", "ISO 2022 IR 100"}:
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            return False
        return True
    return False


def apply_plan(ds: Dataset, plan: IdentityPlan, *, modifying_system: str, source_of_previous_values: str = "",
               now: datetime | None = None) -> list[str]:
    """Set the planned identity on ``ds`` (a header) and record what changed; the keywords changed."""
    wanted: dict[str, object] = {"PatientID": plan.patient_id, "IssuerOfPatientID": plan.issuer}
    if plan.issuer_oid:
        qualifier = Dataset()
        qualifier.UniversalEntityID = plan.issuer_oid
        qualifier.UniversalEntityIDType = "ISO"
        wanted["IssuerOfPatientIDQualifiersSequence"] = DicomSequence([qualifier])
    else:
        wanted["IssuerOfPatientIDQualifiersSequence"] = None  # a qualifier of the source's issuer no longer applies
    wanted["OtherPatientIDsSequence"] = DicomSequence([_ins_item(plan)])
    if plan.name is not None:
        wanted["PatientName"] = plan.name
    if plan.birth_date is not None:
        wanted["PatientBirthDate"] = plan.birth_date
    if plan.sex is not None:
        wanted["PatientSex"] = plan.sex
    if plan.name is not None and not _fits(plan.name, ds):
        ds.decode()  # text read so far becomes str, re-encoded in UTF-8 on write
        wanted = {"SpecificCharacterSet": "ISO_IR 192", **wanted}

    previous = Dataset()
    changed: list[str] = []
    for keyword, value in wanted.items():
        # A copy: setting a keyword updates its element in place.
        old = copy.deepcopy(ds.data_element(keyword)) if keyword in ds else None
        if value is None:
            if old is not None:
                previous.add(old)
                del ds[keyword]
                changed.append(keyword)
            continue
        setattr(ds, keyword, value)
        new = ds.data_element(keyword)
        assert new is not None
        if _same(old, new):
            if old is not None:  # keep the source's element as it was
                ds.add(old)
            continue
        changed.append(keyword)
        if old is not None:
            previous.add(old)
        else:  # added: recorded empty, as it had no value before
            previous.add(DataElement(new.tag, new.VR, DicomSequence() if new.VR == "SQ" else ""))
    if not changed:
        return changed
    item = Dataset()
    item.ModifiedAttributesSequence = DicomSequence([previous])
    item.AttributeModificationDateTime = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S.%f%z")
    item.ModifyingSystem = modifying_system[:64]
    item.SourceOfPreviousValues = source_of_previous_values[:64]
    item.ReasonForTheAttributeModification = "COERCE"
    history = list(ds.get("OriginalAttributesSequence", []))
    ds.OriginalAttributesSequence = DicomSequence([*history, item])
    return changed


def reconcile_file(
    source: Path,
    target: Path,
    plan: IdentityPlan,
    *,
    modifying_system: str,
    source_of_previous_values: str = "",
    now: datetime | None = None,
) -> list[str]:
    """Write ``source`` to ``target`` with the planned identity; the keywords changed.

    The header is read up to the pixel data and written again; the rest of the file is copied as
    is (pixel data byte-identical, never decoded). A deflated data set cannot be split that way and
    is rewritten whole (such files are small: SR, KOS). ``target`` appears complete or not at all.

    Raises
    ------
    ImportFailed
        The file cannot be read as DICOM.
    """
    partial = target.with_name(f".{target.name}.part")
    try:
        with source.open("rb") as stream:
            ds = dcmread(stream, stop_before_pixels=True)
            tail_offset = stream.tell()
            deflated = ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
        if deflated:
            ds = dcmread(source)
        changed = apply_plan(ds, plan, modifying_system=modifying_system,
                             source_of_previous_values=source_of_previous_values, now=now)
        with partial.open("wb") as out:
            dcmwrite(out, ds, enforce_file_format=False)
            if not deflated:
                with source.open("rb") as stream:
                    stream.seek(tail_offset)
                    shutil.copyfileobj(stream, out, 1 << 20)
        os.replace(partial, target)
    except (InvalidDicomError, EOFError, AttributeError) as exc:
        partial.unlink(missing_ok=True)
        raise ImportFailed(f"{source.name}: not a readable DICOM file ({exc})", failed=(source.name,)) from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return changed


def read_identities(paths: Iterable[Path]) -> list[tuple[str, SourceIdentity]]:
    """(file name, identity) of each file, in order."""
    return [(path.name, read_source_identity(path)) for path in paths]
