"""What a retrieval asks for, derived from the study's walk: requests, expected instances, SOP classes.

- a whole study: one STUDY-level request;
- a series: one SERIES-level request;
- some instances: one IMAGE-level request per series holding them (an IMAGE-level identifier
  names one series, PS3.4 C.4.2.1.4 / C.4.3.1.3), series found in the walk.

The SOP classes (for the C-GET storage contexts) are those the IMAGE-level C-FIND reported; for a
series where the PACS did not report them, those its modality may hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom import Dataset

from drimbox.pacs.contexts import sop_classes_for_modality
from drimbox.pacs.models import InstanceInfo, SeriesInfo, StudyInfo
from drimbox.pacs.query import retrieve_identifier

__all__ = ["RetrieveSelection", "select"]


@dataclass(frozen=True)
class RetrieveSelection:
    """The requests of one retrieval and what they should bring."""

    identifiers: tuple[Dataset, ...]
    expected: frozenset[str]
    """SOP Instance UIDs that should arrive (missing ones make the retrieval incomplete)."""
    sop_classes: frozenset[str]


def _classes(series: SeriesInfo, instances: Sequence[InstanceInfo]) -> set[str]:
    classes = {i.sop_class_uid for i in instances if i.sop_class_uid}
    if not instances or any(i.sop_class_uid is None for i in instances):
        classes.update(sop_classes_for_modality(series.modality))
    return classes


def select(
    walk: StudyInfo, series_uid: str | None = None, sop_instance_uids: Iterable[str] | None = None
) -> RetrieveSelection:
    """The selection for a study, one of its series, or some of its instances."""
    study_uid = walk.study_instance_uid
    chosen = [s for s in walk.series if series_uid is None or s.series_instance_uid == series_uid]
    if sop_instance_uids is None:
        level_uid = None if series_uid is None else series_uid
        expected = frozenset(i.sop_instance_uid for s in chosen for i in s.instances)
        classes = set().union(*(_classes(s, s.instances) for s in chosen)) if chosen else set()
        return RetrieveSelection((retrieve_identifier(study_uid, level_uid),), expected, frozenset(classes))
    wanted = frozenset(sop_instance_uids)
    identifiers: list[Dataset] = []
    classes = set()
    placed: set[str] = set()
    for series in chosen:
        picked = [i for i in series.instances if i.sop_instance_uid in wanted]
        if not picked:
            continue
        uids = [i.sop_instance_uid for i in picked]
        placed.update(uids)
        identifiers.append(retrieve_identifier(study_uid, series.series_instance_uid, uids))
        classes |= _classes(series, picked)
    unplaced = sorted(wanted - placed)
    if unplaced and series_uid is not None:
        # Not in the walk (added since?): ask the named series for them anyway.
        identifiers.append(retrieve_identifier(study_uid, series_uid, unplaced))
        known = walk.find_series(series_uid)
        classes |= set(sop_classes_for_modality(known.modality if known else ""))
    return RetrieveSelection(tuple(identifiers), wanted, frozenset(classes))
