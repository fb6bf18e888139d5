"""Parsing untrusted XML: no DTD, no entity expansion, no network, bounded depth and size.

Every XML document the registry reads (SOAP envelopes, DSG signature documents) goes through
:func:`parse_xml`, so entity-expansion bombs and external entity reads are refused in one place.
"""

from __future__ import annotations

from lxml import etree

__all__ = ["XmlRejected", "parse_xml", "text_of"]


class XmlRejected(ValueError):
    """The bytes are not a well-formed XML document acceptable to the registry."""


def parse_xml(data: bytes) -> etree._Element:
    """Parse ``data`` into its root element.

    Raises
    ------
    XmlRejected
        Not well-formed, empty, or declares a document type (DTDs are never needed by SOAP and are
        the vehicle of entity attacks; SOAP 1.2 Part 1 §5 forbids them in envelopes).
    """
    if not data.strip():
        raise XmlRejected("empty document")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"not well-formed XML: {exc.msg}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise XmlRejected("document type declarations are not allowed")
    return root


def text_of(element: etree._Element | None) -> str:
    """The element's text, stripped; empty for ``None``."""
    if element is None or element.text is None:
        return ""
    return str(element.text).strip()
