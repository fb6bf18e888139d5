"""Reading ebRIM 3.0 registry objects as XDS uses them (ITI TF-3 §4.2.3, §4.2.4).

A ``SubmitObjectsRequest`` is turned into plain views — :class:`RegistryObject` for ExtrinsicObjects
and RegistryPackages, :class:`Association` — that give access to slots, classifications and external
identifiers by scheme without interpreting them; :mod:`registry.xds.validation` interprets them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from lxml import etree

from registry.xds.ns import CLS_SUBMISSION_SET, RIM

__all__ = [
    "Association",
    "Classification",
    "RegistryObject",
    "SubmittedObjects",
    "read_extrinsic",
    "read_objects",
    "slot_values",
]

_R = f"{{{RIM}}}"


def slot_values(element: etree._Element) -> dict[str, list[str]]:
    """The element's own ``rim:Slot`` values by slot name (several slots of one name are merged)."""
    slots: dict[str, list[str]] = defaultdict(list)
    for slot in element.findall(f"{_R}Slot"):
        name = slot.get("name", "")
        slots[name].extend((v.text or "").strip() for v in slot.findall(f"{_R}ValueList/{_R}Value"))
    return dict(slots)


def _localized(element: etree._Element, child: str) -> str:
    found = element.find(f"{_R}{child}/{_R}LocalizedString")
    return (found.get("value") or "").strip() if found is not None else ""


@dataclass
class Classification:
    """A ``rim:Classification``: scheme or node, the code (``nodeRepresentation``), its slots and name."""

    element: etree._Element
    scheme: str
    node: str
    code: str
    slots: dict[str, list[str]]
    name: str
    classified: str


@dataclass
class RegistryObject:
    """An ExtrinsicObject (DocumentEntry) or RegistryPackage (SubmissionSet, Folder)."""

    element: etree._Element
    id: str
    kind: str
    """``ExtrinsicObject`` or ``RegistryPackage``."""
    slots: dict[str, list[str]]
    classifications: list[Classification] = field(default_factory=list)
    external_ids: dict[str, list[str]] = field(default_factory=dict)
    """External identifier values by identification scheme."""

    @property
    def mime_type(self) -> str:
        """``mimeType`` attribute (ExtrinsicObject)."""
        return (self.element.get("mimeType") or "").strip()

    @property
    def object_type(self) -> str:
        """``objectType`` attribute."""
        return (self.element.get("objectType") or "").strip()

    @property
    def title(self) -> str:
        """``rim:Name`` (XDS title)."""
        return _localized(self.element, "Name")

    def classified_by(self, scheme: str) -> list[Classification]:
        """Classifications of ``scheme``."""
        return [c for c in self.classifications if c.scheme == scheme]

    @property
    def is_submission_set(self) -> bool:
        """Classified by the SubmissionSet node (ITI TF-3 §4.2.3.3)."""
        return self.kind == "RegistryPackage" and any(c.node == CLS_SUBMISSION_SET for c in self.classifications)


@dataclass
class Association:
    """A ``rim:Association``."""

    element: etree._Element
    id: str
    type: str
    source: str
    target: str
    slots: dict[str, list[str]]


@dataclass
class SubmittedObjects:
    """The content of a ``rim:RegistryObjectList``."""

    packages: list[RegistryObject]
    documents: list[RegistryObject]
    associations: list[Association]
    unsupported: list[str]
    """Local names of top-level objects the registry does not take (ObjectRef is fine and not listed)."""


def _classification(element: etree._Element) -> Classification:
    return Classification(
        element=element,
        scheme=(element.get("classificationScheme") or "").strip(),
        node=(element.get("classificationNode") or "").strip(),
        code=(element.get("nodeRepresentation") or "").strip(),
        slots=slot_values(element),
        name=_localized(element, "Name"),
        classified=(element.get("classifiedObject") or "").strip(),
    )


def _registry_object(element: etree._Element, kind: str) -> RegistryObject:
    external: dict[str, list[str]] = defaultdict(list)
    for ext in element.findall(f"{_R}ExternalIdentifier"):
        external[(ext.get("identificationScheme") or "").strip()].append((ext.get("value") or "").strip())
    return RegistryObject(
        element=element,
        id=(element.get("id") or "").strip(),
        kind=kind,
        slots=slot_values(element),
        classifications=[_classification(c) for c in element.findall(f"{_R}Classification")],
        external_ids=dict(external),
    )


def read_extrinsic(element: etree._Element) -> RegistryObject:
    """View one (registered) ``rim:ExtrinsicObject``."""
    return _registry_object(element, "ExtrinsicObject")


def read_objects(object_list: etree._Element) -> SubmittedObjects:
    """Read the children of a ``rim:RegistryObjectList``.

    Top-level ``rim:Classification`` elements (ebRIM allows them beside their object) are attached to
    the object they classify.
    """
    packages: list[RegistryObject] = []
    documents: list[RegistryObject] = []
    associations: list[Association] = []
    loose: list[Classification] = []
    unsupported: list[str] = []
    for child in object_list:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        if qname.namespace != RIM:
            unsupported.append(qname.text)
        elif qname.localname == "ExtrinsicObject":
            documents.append(_registry_object(child, "ExtrinsicObject"))
        elif qname.localname == "RegistryPackage":
            packages.append(_registry_object(child, "RegistryPackage"))
        elif qname.localname == "Association":
            associations.append(
                Association(
                    element=child,
                    id=(child.get("id") or "").strip(),
                    type=(child.get("associationType") or "").strip(),
                    source=(child.get("sourceObject") or "").strip(),
                    target=(child.get("targetObject") or "").strip(),
                    slots=slot_values(child),
                )
            )
        elif qname.localname == "Classification":
            loose.append(_classification(child))
        elif qname.localname != "ObjectRef":
            unsupported.append(qname.localname)
    by_id = {o.id: o for o in (*packages, *documents)}
    for classification in loose:
        owner = by_id.get(classification.classified)
        if owner is not None:
            owner.classifications.append(classification)
        else:
            unsupported.append(f"Classification classifying unknown object {classification.classified!r}")
    return SubmittedObjects(packages, documents, associations, unsupported)
