"""Is this a screening mammography that may be read again? (checked before a request is accepted)

An exam qualifies when its images (the instance headers the source node describes, WADO-RS metadata)
hold, for each breast imaged, a **CC and an MLO view** (ViewCodeSequence SNOMED 399162004 / 399368009,
else ViewPosition) in **Digital Mammography X-Ray Image Storage – For Presentation** images
(``1.2.840.10008.5.1.4.1.1.1.2``, Modality MG, PresentationIntentType ``FOR PRESENTATION``). Other
views (implant-displaced ``ID`` views, spot compressions, extra MLOs) are allowed on top; For
Processing images are ignored (they are for CAD and QC, not for reading). A single-breast exam
(mastectomy) qualifies when the request says which breast. The first reading must be ACR 1 or 2 for
every breast read: 3 to 5 already lead to a work-up, not to a second read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom import Dataset

from drimbox.screening.errors import NotEligible, NotScreeningExam
from drimbox.screening.model import Reading

__all__ = ["ImageFacts", "MG_FOR_PRESENTATION", "check_eligible", "check_screening_exam", "image_facts"]

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
_VIEW_CODES = {"399162004": "CC", "399368009": "MLO"}
_SIDES = {"R": "right", "L": "left"}


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What the check needs of one instance."""

    sop_class_uid: str
    modality: str
    laterality: str
    """``R``, ``L`` (ImageLaterality, else Laterality), ``B``/``U`` or empty."""
    view: str
    """``CC``, ``MLO`` (from ViewCodeSequence, else ViewPosition), or what else the header says."""
    for_presentation: bool


def image_facts(ds: Dataset) -> ImageFacts:
    """The facts of one instance header (PS3.3 C.8.11.7 Mammography Image Module)."""
    laterality = str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "").upper()
    view = ""
    for item in ds.get("ViewCodeSequence", []) or []:
        view = _VIEW_CODES.get(str(item.get("CodeValue", "")), str(item.get("CodeMeaning", "")))
        break
    if not view:
        view = str(ds.get("ViewPosition", "") or "").upper()
    intent = str(ds.get("PresentationIntentType", "FOR PRESENTATION") or "FOR PRESENTATION").upper()
    return ImageFacts(sop_class_uid=str(ds.get("SOPClassUID", "")), modality=str(ds.get("Modality", "")),
                      laterality=laterality, view=view, for_presentation=intent == "FOR PRESENTATION")


def check_screening_exam(images: Iterable[ImageFacts], *, single_breast: str | None = None) -> None:
    """Raise :class:`NotScreeningExam` listing what is missing, unless the exam is a screening mammography."""
    facts = list(images)
    readable = [f for f in facts if f.sop_class_uid == MG_FOR_PRESENTATION and f.for_presentation
                and f.modality == "MG"]
    problems: list[str] = []
    if not readable:
        modalities = sorted({f.modality for f in facts if f.modality}) or ["none"]
        problems.append(f"no Digital Mammography For Presentation image (modalities found: {', '.join(modalities)})")
    else:
        present = {(f.laterality, f.view) for f in readable}
        for side in [single_breast] if single_breast else ["R", "L"]:
            for view in ("CC", "MLO"):
                if (side, view) not in present:
                    problems.append(f"the {_SIDES[side]} breast has no {view} view ({side}{view})")
        if single_breast:
            other = "L" if single_breast == "R" else "R"
            if any(f.laterality == other for f in readable):
                problems.append(f"the request says only the {_SIDES[single_breast]} breast was imaged, "
                                f"but the exam has {_SIDES[other]} breast images")
    if problems:
        raise NotScreeningExam("not a screening mammography: second reads are for 4-view screening exams "
                               "(CC and MLO of each breast imaged)", problems=tuple(problems))


def check_eligible(l1: Reading) -> None:
    """Raise :class:`NotEligible` unless every breast of the L1 reading is ACR 1 or 2."""
    problems = tuple(f"{_SIDES[b.laterality]} breast: ACR {b.category} (a second read is for ACR 1 or 2)"
                     for b in l1.breasts if b.category > 2)
    if problems:
        raise NotEligible("the L1 reading is not normal or benign: ACR 3-5 lead to a diagnostic work-up, "
                          "not to a second read", problems=problems)
