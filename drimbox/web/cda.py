"""A CDA R2 report shown in the page: its human-readable narrative, made safe.

A report comes from another site through the registry: its content is not trusted. It is parsed
with lxml without DTDs, entities or network, and its narrative block (``section/text``, CDA's own
small markup: paragraph, list, table, content, br, sub/sup, linkHtml…) is *rebuilt* element by
element into a fixed set of HTML elements, every text escaped and no attribute copied but a few
checked ones (table spans, ``styleCode`` mapped to known classes, http(s) links). Anything else —
``<script>``, event attributes, ``javascript:`` links, foreign elements — cannot come through,
because nothing is passed as markup. A CDA whose body is a document (``nonXMLBody``, the PDF the
demo's RIS sends) gives that attachment instead.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lxml import etree
from markupsafe import Markup, escape

__all__ = ["CdaReport", "CdaSection", "read_cda"]

_V3 = "urn:hl7-org:v3"
_NS = {"v3": _V3}
_SIMPLE = {
    "paragraph": "p", "br": "br", "sub": "sub", "sup": "sup", "caption": "strong",
    "table": "table", "thead": "thead", "tbody": "tbody", "tfoot": "tfoot", "tr": "tr", "th": "th", "td": "td",
    "item": "li", "content": "span", "footnote": "small", "footnoteRef": "small",
}  # fmt: skip
_STYLES = {"bold": "cda-bold", "italics": "cda-italics", "underline": "cda-underline", "emphasis": "cda-emphasis"}
_MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class CdaSection:
    title: str | None
    html: Markup


@dataclass(frozen=True, slots=True)
class CdaReport:
    """What the page shows of a CDA: title, time, author, the narrative sections, or the attachment."""

    title: str | None
    effective_time: str | None
    authors: tuple[str, ...] = ()
    sections: tuple[CdaSection, ...] = ()
    attachment: tuple[str, bytes] | None = field(default=None, repr=False)
    """``(media type, content)`` of a ``nonXMLBody`` (e.g. ``application/pdf``)."""


def _local(element: etree._Element) -> str:
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    value = " ".join("".join(element.itertext()).split())
    return value or None


def _attributes(element: etree._Element, name: str) -> str:
    attrs: list[str] = []
    style = element.get("styleCode")
    if style:
        classes = [_STYLES[s.lower()] for s in style.split() if s.lower() in _STYLES]
        if classes:
            attrs.append(f' class="{escape(" ".join(classes))}"')
    if name in ("td", "th"):
        for span in ("colspan", "rowspan"):
            value = element.get(span)
            if value and value.isdigit() and 0 < int(value) < 100:
                attrs.append(f' {span}="{value}"')
    return "".join(attrs)


def _render(element: etree._Element, depth: int = 0) -> str:
    """HTML of the children of a narrative element (the element itself is rendered by the caller)."""
    parts = [str(escape(element.text or ""))]
    for child in element:
        if isinstance(child.tag, str):
            parts.append(_render_element(child, depth + 1))
        parts.append(str(escape(child.tail or "")))
    return "".join(parts)


def _render_element(element: etree._Element, depth: int) -> str:
    if depth > _MAX_DEPTH:
        return str(escape(_text(element) or ""))
    name = _local(element) if etree.QName(element).namespace in (None, _V3) else ""
    inner = _render(element, depth)
    if name == "br":
        return "<br>"
    if name == "list":
        tag = "ol" if (element.get("listType") or "").lower() == "ordered" else "ul"
        return f"<{tag}{_attributes(element, tag)}>{inner}</{tag}>"
    if name == "linkHtml":
        href = element.get("href") or ""
        if urlsplit(href).scheme.lower() in ("http", "https"):
            return f'<a href="{escape(href)}" rel="noopener noreferrer nofollow">{inner}</a>'
        return f"<span>{inner}</span>"
    if name in ("renderMultiMedia", "col", "colgroup"):
        return ""
    simple = _SIMPLE.get(name)
    if simple is None:
        return inner  # an unknown element: its text only
    return f"<{simple}{_attributes(element, simple)}>{inner}</{simple}>"


def _sections(root: etree._Element) -> list[CdaSection]:
    sections = []
    for section in root.iterfind(".//v3:structuredBody//v3:section", _NS):
        text = section.find("v3:text", _NS)
        title = _text(section.find("v3:title", _NS))
        if text is None and title is None:
            continue
        sections.append(CdaSection(title, Markup(_render(text)) if text is not None else Markup("")))
    return sections


def _attachment(root: etree._Element) -> tuple[str, bytes] | None:
    text = root.find(".//v3:nonXMLBody/v3:text", _NS)
    if text is None:
        return None
    media = text.get("mediaType") or "application/octet-stream"
    raw = (text.text or "").strip()
    if (text.get("representation") or "").upper() == "B64":
        try:
            return media, base64.b64decode("".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            return None
    return media, raw.encode("utf-8")


def read_cda(data: bytes) -> CdaReport:
    """Parse a CDA R2 document; raises ``ValueError`` when it is not well-formed XML or not a CDA."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"the report is not well-formed XML: {exc}") from exc
    if _local(root) != "ClinicalDocument":
        raise ValueError("the report is not a CDA ClinicalDocument")
    effective = root.find("v3:effectiveTime", _NS)
    authors = []
    for person in root.iterfind("v3:author/v3:assignedAuthor/v3:assignedPerson/v3:name", _NS):
        name = " ".join(filter(None, (_text(person.find("v3:prefix", _NS)), _text(person.find("v3:given", _NS)),
                                      _text(person.find("v3:family", _NS)))))
        if name:
            authors.append(name)
    return CdaReport(
        title=_text(root.find("v3:title", _NS)),
        effective_time=effective.get("value") if effective is not None else None,
        authors=tuple(authors),
        sections=tuple(_sections(root)),
        attachment=_attachment(root),
    )
