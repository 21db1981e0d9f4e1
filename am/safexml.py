# -*- test-case-name: tests.test_safexml -*-
"""
Parsing XML from strangers (credentials, RSpecs): one hardened recipe.

No DTD, no entities, no network, no huge trees, bounded nesting. A DOCTYPE is
refused before libxml2 reads it when the prolog is ASCII-compatible, and again
after parsing (other encodings), so entity tricks never get expanded.
"""

from __future__ import annotations

import re
from typing import Optional

from lxml import etree

_SPACE = re.compile(rb"[ \t\r\n]*")


class UnsafeXML(ValueError):
    """
    The document was refused; C{message} says why and echoes none of it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _parser(encoding: Optional[str], signed: bool) -> etree.XMLParser:
    # A fresh parser per document: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=not signed,
        collect_ids=signed,
        encoding=encoding,
    )


def doctypeInProlog(data: bytes) -> bool:
    """
    Does an ASCII-compatible document declare a DOCTYPE?  It can only stand in
    the prolog, after whitespace, processing instructions and comments.
    """
    i = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    while True:
        i = _SPACE.match(data, i).end()
        if data.startswith(b"<?", i):
            end, skip = data.find(b"?>", i + 2), 2
        elif data.startswith(b"<!--", i):
            end, skip = data.find(b"-->", i + 4), 3
        else:
            return data.startswith(b"<!DOCTYPE", i)
        if end < 0:
            return False
        i = end + skip


def _firstLine(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def parseUntrusted(
    data: bytes,
    what: str,
    maxDepth: Optional[int] = None,
    encoding: Optional[str] = None,
    signed: bool = False,
) -> etree._Element:
    """
    Parse C{data} (size already checked by the caller) and return its root.

    @param what: how to name the document in messages, e.g. C{"the RSpec"}.
    @param encoding: force a character encoding (credentials: UTF-8), or
        C{None} to honour the document's declaration.
    @param signed: keep what an XML signature covers or refers to
        (processing instructions, C{xml:id}s); otherwise both are dropped.
    @raise UnsafeXML: a DOCTYPE or entity declaration, anything not
        well-formed, or nesting deeper than C{maxDepth}.
    """
    refused = f"{what} contains a DOCTYPE: DTDs and entity declarations are not allowed"
    if not data.strip():
        raise UnsafeXML(f"{what} is empty, not well-formed XML")
    if doctypeInProlog(data):
        raise UnsafeXML(refused)
    try:
        root = etree.fromstring(data, _parser(encoding, signed))
    except etree.XMLSyntaxError as e:
        raise UnsafeXML(f"{what} is not well-formed XML: {_firstLine(e)}") from None
    except ValueError as e:  # e.g. an unsupported encoding declaration
        raise UnsafeXML(f"{what} cannot be read (not well-formed XML): {_firstLine(e)}") from None
    if root is None:
        raise UnsafeXML(f"{what} is empty, not well-formed XML")
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise UnsafeXML(refused)
    if maxDepth is not None:
        depth = 0
        for event, _ in etree.iterwalk(root, events=("start", "end")):
            depth += 1 if event == "start" else -1
            if depth > maxDepth:
                raise UnsafeXML(f"{what} nests elements deeper than {maxDepth} levels")
    return root
