"""
The one hardened XML recipe that credentials and RSpecs share.
"""

from __future__ import annotations

import pytest

from am.safexml import UnsafeXML, doctypeInProlog, parseUntrusted


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        b'<?xml version="1.0"?><!-- c --><?pi x?>\n<!DOCTYPE a SYSTEM "http://example.invalid/a.dtd"><a/>',
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'.encode("utf-16"),
    ],
)
def test_doctypeRefused(data: bytes) -> None:
    """
    A DOCTYPE is refused, in the prolog scan or (other encodings) after parsing.
    """
    with pytest.raises(UnsafeXML, match="DOCTYPE"):
        parseUntrusted(data, "the document")


def test_prologScan() -> None:
    """
    Only a DOCTYPE in the prolog counts; text mentioning one is fine.
    """
    assert doctypeInProlog(b"\xef\xbb\xbf <!-- x --> <!DOCTYPE a><a/>")
    assert not doctypeInProlog(b"<a><![CDATA[<!DOCTYPE a>]]></a>")
    assert parseUntrusted(b"<a><![CDATA[<!DOCTYPE a>]]></a>", "x").text == "<!DOCTYPE a>"


@pytest.mark.parametrize("data", [b"", b"   ", b"<a>", b"<a>&nope;</a>", b"\x00"])
def test_notWellFormed(data: bytes) -> None:
    """
    Empty and broken documents name what they are, never echo the input.
    """
    with pytest.raises(UnsafeXML, match="well-formed"):
        parseUntrusted(data, "the document")


def test_depth() -> None:
    """
    Nesting beyond the bound is refused.
    """
    deep = b"<a>" * 10 + b"</a>" * 10
    assert parseUntrusted(deep, "x", maxDepth=10).tag == "a"
    with pytest.raises(UnsafeXML, match="deeper than 9"):
        parseUntrusted(deep, "x", maxDepth=9)


def test_signedKeepsWhatSignaturesCover() -> None:
    """
    Signed documents keep processing instructions and xml:ids; others drop them.
    """
    data = b'<a><?pi keep?><b xml:id="r1"/><!-- gone --></a>'
    signed = parseUntrusted(data, "x", signed=True)
    plain = parseUntrusted(data, "x")
    assert len(signed) == 2 and len(plain) == 1
    assert signed.getroottree().getroot().xpath("//*[@xml:id='r1']")
