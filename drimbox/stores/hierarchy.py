"""QIDO-RS searches as hierarchical C-FINDs (PS3.4 C.4.1.3.1.1), for any PACS, strict ones included.

The node never negotiates relational queries, so a query below STUDY level names exactly one study
(and, at IMAGE level, one series). A QIDO search that does not, such as ``/series?Modality=CT`` or
``/studies/{study}/instances``, is walked level by level: STUDY, then SERIES for each matching
study, then IMAGE for each matching series. At each level the identifier carries:

- the unique keys of the levels above, single-valued (from the path or from the parent answer);
- the matching and return keys *of that level only*. DCMTK's ``dcmqrscp --check-find`` refuses a
  key of another level with 0xA900: a STUDY query with Modality instead of ModalitiesInStudy, or a
  SERIES query carrying StudyDate.

A parent level is queried only when it has to be: when its unique key is not one given UID, when it
has other matching keys, or when the answer must carry its attributes (``/series`` returns study
attributes). Parent answers are read completely before the children are queried, so the walk uses
one (pooled) association at a time; the last level streams, and closing the iterator cancels its
C-FIND.

Archive-computed attributes (ModalitiesInStudy, NumberOfStudyRelatedSeries/Instances,
NumberOfSeriesRelatedInstances) are optional return keys that some PACSes ignore: dcmqrscp neither
returns nor matches ModalitiesInStudy, and answers every study to ``ModalitiesInStudy=MG``. When an
answer lacks one that was asked for, it is computed from the level below, and a matching key the
PACS could not have applied is then checked here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag

from dicomweb_gateway import QueryLevel, SearchQuery
from dicomweb_gateway.attributes import level_of
from dicomweb_gateway.matching import element_values, matches

__all__ = ["Find", "LevelKeys", "hierarchical_search", "split_keys"]

Find = Callable[[QueryLevel, Dataset], Iterator[Dataset]]
"""Runs one C-FIND at a level with an identifier, yielding the answers (``PacsClient.find``)."""

_ORDER = (QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE)
_UNIQUE = {
    QueryLevel.STUDY: "StudyInstanceUID",
    QueryLevel.SERIES: "SeriesInstanceUID",
    QueryLevel.IMAGE: "SOPInstanceUID",
}
_NOT_QUERY_KEYS = frozenset({Tag("SpecificCharacterSet"), Tag("RetrieveURL"), Tag("QueryRetrieveLevel")})
"""Answered by the gateway (RetrieveURL, character set), or set by the bridge (level)."""
_ANY_LEVEL = frozenset({"InstanceAvailability", "TimezoneOffsetFromUTC"})
"""Attributes that exist at every level: asked at the level searched, whatever ``level_of`` says."""
_DIMSE_ONLY = (Tag("QueryRetrieveLevel"), Tag("RetrieveAETitle"))
"""Identifier elements of the C-FIND exchange itself, not attributes of the study (the AE title is
also the PACS's internal name, which QIDO clients have no use for)."""
_STUDY_COMPUTED = frozenset({"ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"})
_SERIES_COMPUTED = frozenset({"NumberOfSeriesRelatedInstances"})


@dataclass
class LevelKeys:
    """The keys of one level: matching elements (non-empty values) and return tags."""

    matching: list[DataElement] = field(default_factory=list)
    returns: list[BaseTag] = field(default_factory=list)

    def keywords(self) -> set[str]:
        """Keywords of every key of this level."""
        tags = [e.tag for e in self.matching] + list(self.returns)
        return {keyword_for_tag(t) for t in tags}


def split_keys(query: SearchQuery) -> dict[QueryLevel, LevelKeys]:
    """The query's matching and return keys, by the level they belong to.

    Return keys of a level below the search level are dropped: a hierarchical C-FIND cannot return
    them (``includefield=Modality`` on ``/studies``); the gateway answers them empty.
    """
    levels = _ORDER[: _ORDER.index(query.level) + 1]
    keys = {level: LevelKeys() for level in levels}
    for elem in query.matching:
        keys[_level(elem.keyword, query.level)].matching.append(elem)
    matched = {e.tag for e in query.matching}
    for tag in dict.fromkeys(query.return_keys):
        keyword = keyword_for_tag(tag)
        level = _level(keyword, query.level)
        if tag in _NOT_QUERY_KEYS or tag in matched or level not in keys:
            continue
        keys[level].returns.append(tag)
    return keys


def _level(keyword: str, searched: QueryLevel) -> QueryLevel:
    return searched if keyword in _ANY_LEVEL else level_of(keyword)


def hierarchical_search(find: Find, query: SearchQuery) -> Iterator[Dataset]:
    """Yield the answers to ``query``, walking the levels above it as needed (see module doc).

    Parameters
    ----------
    find
        Runs one C-FIND; its errors propagate.
    query
        A validated search (matching on sequence items is not supported by the gateway).
    """
    keys = split_keys(query)
    levels = _ORDER[: _ORDER.index(query.level) + 1]
    return _Walk(find, keys, levels).answers(0, ())


@dataclass
class _Node:
    """One answer of a level above the searched one, shared by all the answers below it."""

    level: QueryLevel
    answer: Dataset
    unfilled: set[str]
    """Computed attributes asked only as return keys, filled when a result below is first yielded."""
    parent_study: str


@dataclass
class _Walk:
    find: Find
    keys: dict[QueryLevel, LevelKeys]
    levels: Sequence[QueryLevel]

    def answers(self, depth: int, chain: tuple[_Node, ...]) -> Iterator[Dataset]:
        level = self.levels[depth]
        last = depth == len(self.levels) - 1
        given = self._given_uid(level)
        if not last and given is not None and self._only_unique_key(level):
            # Nothing to learn at this level: go down with the UID from the path.
            known = Dataset()
            setattr(known, _UNIQUE[level], given)
            yield from self.answers(depth + 1, (*chain, _Node(level, known, set(), _study_of(chain))))
            return
        identifier = self._identifier(level, chain)
        if last:
            for answer in self.find(level, identifier):
                if self._complete(level, answer, chain, everything=True) is not None:
                    yield self._result(chain, answer)
            return
        # Read the whole level first: the children's C-FINDs then reuse the same association.
        found = [a for a in self.find(level, identifier) if a.get(_UNIQUE[level])]
        for answer in found:
            # Computed attributes needed for matching are filled now, the others only if a result
            # below this answer is ever yielded (a limit often stops the walk long before).
            node = self._complete(level, answer, chain, everything=False)
            if node is not None:
                yield from self.answers(depth + 1, (*chain, node))

    def _result(self, chain: tuple[_Node, ...], answer: Dataset) -> Dataset:
        merged = Dataset()
        for node in chain:
            if node.unfilled:
                self._fill(node.level, node.answer, node.parent_study)
                node.unfilled.clear()
            _merge_into(merged, node.answer)
        _merge_into(merged, answer)
        return merged

    def _given_uid(self, level: QueryLevel) -> str | None:
        for elem in self.keys[level].matching:
            if elem.keyword == _UNIQUE[level]:
                values = element_values(elem)
                return values[0] if len(values) == 1 else None
        return None

    def _only_unique_key(self, level: QueryLevel) -> bool:
        return self.keys[level].keywords() <= {_UNIQUE[level]}

    def _identifier(self, level: QueryLevel, chain: tuple[_Node, ...]) -> Dataset:
        identifier = Dataset()
        for node in chain:
            keyword = _UNIQUE[node.level]
            setattr(identifier, keyword, str(node.answer.get(keyword, "")))
        level_keys = self.keys[level]
        for elem in level_keys.matching:
            identifier.add(elem)
        for tag in [*level_keys.returns, Tag(_UNIQUE[level])]:
            if tag not in identifier:
                identifier.add(_empty(tag))
        if any(not v.isascii() for e in level_keys.matching for v in element_values(e)):
            identifier.SpecificCharacterSet = "ISO_IR 192"
        return identifier

    def _complete(
        self, level: QueryLevel, answer: Dataset, chain: tuple[_Node, ...], *, everything: bool
    ) -> _Node | None:
        """Fill the computed attributes the PACS left out (those matched on at least); ``None`` if
        the answer then fails to match."""
        study = _study_of(chain)
        if level == QueryLevel.IMAGE:
            return _Node(level, answer, set(), study)
        computed = _STUDY_COMPUTED if level == QueryLevel.STUDY else _SERIES_COMPUTED
        wanted = self.keys[level].keywords() & computed
        missing = {k for k in wanted if not element_values(_element(answer, k))}
        matched = {e.keyword for e in self.keys[level].matching} & missing
        if not (matched or (everything and missing)):
            return _Node(level, answer, missing, study)
        self._fill(level, answer, study)
        unchecked = Dataset()
        for elem in self.keys[level].matching:
            if elem.keyword in matched:
                unchecked.add(elem)
        return _Node(level, answer, set(), study) if matches(unchecked, answer) else None

    def _fill(self, level: QueryLevel, answer: Dataset, study: str) -> None:
        uid = str(answer.get(_UNIQUE[level], ""))
        if level == QueryLevel.STUDY:
            _fill_study(self.find, answer, uid)
        else:
            _fill_series(self.find, answer, study, uid)


def _study_of(chain: tuple[_Node, ...]) -> str:
    return str(chain[0].answer.get("StudyInstanceUID", "")) if chain else ""


def _element(ds: Dataset, keyword: str) -> DataElement | None:
    elem = ds.get(Tag(keyword))
    return elem if isinstance(elem, DataElement) else None


def _empty(tag: BaseTag) -> DataElement:
    vr = dictionary_VR(tag).split(" or ")[0]
    return DataElement(tag, vr, DicomSequence() if vr == "SQ" else None)


def _merge_into(merged: Dataset, answer: Dataset) -> None:
    for elem in answer:
        if elem.tag not in _DIMSE_ONLY:
            merged.add(elem)


def _counts(find: Find, study_uid: str, series_uid: str) -> int:
    identifier = Dataset()
    identifier.StudyInstanceUID = study_uid
    identifier.SeriesInstanceUID = series_uid
    identifier.SOPInstanceUID = ""
    return sum(1 for _ in find(QueryLevel.IMAGE, identifier))


def _series_of(find: Find, study_uid: str) -> list[Dataset]:
    identifier = Dataset()
    identifier.StudyInstanceUID = study_uid
    identifier.SeriesInstanceUID = ""
    identifier.Modality = ""
    identifier.NumberOfSeriesRelatedInstances = None
    return [s for s in find(QueryLevel.SERIES, identifier) if s.get("SeriesInstanceUID")]


def _fill_series(find: Find, answer: Dataset, study_uid: str, series_uid: str) -> None:
    answer.NumberOfSeriesRelatedInstances = _counts(find, study_uid, series_uid)


def _fill_study(find: Find, answer: Dataset, study_uid: str) -> None:
    series = _series_of(find, study_uid)
    answer.ModalitiesInStudy = sorted({m for s in series for m in _values(s.get("Modality"))})
    answer.NumberOfStudyRelatedSeries = len(series)
    total = 0
    for item in series:
        counted = element_values(_element(item, "NumberOfSeriesRelatedInstances"))
        total += int(counted[0]) if counted else _counts(find, study_uid, str(item.SeriesInstanceUID))
    answer.NumberOfStudyRelatedInstances = total


def _values(value: object) -> Iterable[str]:
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value if v]
    return [str(value)]
