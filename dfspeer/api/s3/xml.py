"""S3 XML: building answers and parsing request bodies with :mod:`xml.etree.ElementTree`.

Every answer is built as an element tree and serialised by ElementTree, so text is always
escaped; text XML 1.0 cannot carry at all (most control characters) is refused with
:class:`XmlTextError` before anything is written (a listing asks for
``encoding-type=url`` then). Request bodies are small (``MAX_XML_BODY_BYTES``), parsed by
expat (no external entities; billion-laughs protection since expat 2.4) and read by local
tag name, so a client may or may not use S3's namespace.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BODY_BYTES = 2 * 1024 * 1024
_XML10_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

Child = tuple[str, "str | int | bool | list[Child] | None"]
"""``(tag, value)``: text (str / int / bool, None = left out) or a list of children."""


class XmlTextError(ValueError):
    """Text that XML 1.0 cannot carry (a control character in a key)."""


class XmlBodyError(ValueError):
    """A request body that is not the expected XML document."""


def xml_safe(text: str) -> bool:
    """True if ``text`` can be carried by XML 1.0."""
    return _XML10_BAD.search(text) is None


def iso8601(unix_s: float) -> str:
    """``2006-02-03T16:45:09.000Z`` (S3's timestamp in XML)."""
    stamp = datetime.fromtimestamp(unix_s, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _fill(parent: ET.Element, children: Iterable[Child]) -> None:
    for tag, value in children:
        if value is None:
            continue
        node = ET.SubElement(parent, tag)
        if isinstance(value, list):
            _fill(node, value)
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if not xml_safe(text):
            raise XmlTextError(f"<{tag}> text holds a character XML 1.0 cannot carry")
        node.text = text


def document(
    root: str, children: Iterable[Child], *, namespace: bool = True, text: str | None = None
) -> bytes:
    """``<?xml ...?><root xmlns=S3>text children</root>`` as UTF-8 bytes. Raises
    XmlTextError."""
    node = ET.Element(root, {"xmlns": NS} if namespace else {})
    if text:
        node.text = text
    _fill(node, children)
    text_out: bytes = ET.tostring(node, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + text_out


def error_document(code: str, message: str, resource: str, request_id: str) -> bytes:
    """S3's ``<Error>`` body (control characters in the message or path are replaced)."""
    children: list[Child] = [
        ("Code", code),
        ("Message", _XML10_BAD.sub("?", message)),
        ("Resource", _XML10_BAD.sub("?", resource)),
        ("RequestId", request_id),
    ]
    return document("Error", children, namespace=False)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(body: bytes, root: str) -> ET.Element:
    """The root element of ``body``, which must be named ``root`` (any namespace).
    Raises XmlBodyError."""
    if len(body) > MAX_XML_BODY_BYTES:
        raise XmlBodyError(f"the XML body is over {MAX_XML_BODY_BYTES} bytes")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise XmlBodyError("document type declarations are not accepted")
    try:
        node = ET.fromstring(body)
    except ET.ParseError as exc:
        raise XmlBodyError(f"not well-formed XML: {exc}") from None
    if _local(node.tag) != root:
        raise XmlBodyError(f"expected a <{root}> document, got <{_local(node.tag)}>")
    return node


def children(node: ET.Element, tag: str) -> list[ET.Element]:
    """The direct children of ``node`` named ``tag`` (any namespace)."""
    return [c for c in node if _local(c.tag) == tag]


def text_of(node: ET.Element, tag: str, default: str | None = None) -> str | None:
    """Text of the first direct child named ``tag`` ('' if empty), else ``default``."""
    for c in node:
        if _local(c.tag) == tag:
            return c.text or ""
    return default


def flat(node: ET.Element) -> Mapping[str, str]:
    """``{local tag: text}`` of the direct children of ``node``."""
    return {_local(c.tag): c.text or "" for c in node}
