"""
Tests for L{rspec.xml}: hardened parsing, compression and URNs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from rspec.xml import (
    MAX_SIZE,
    RSpecError,
    compress,
    decompress,
    managerURN,
    nodeURN,
    parseDocument,
    sliverIdFromURN,
    sliverURN,
)

REPO = Path(__file__).parent.parent
RSPEC = '<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">{}</rspec>'


def billionLaughs(levels: int = 10) -> str:
    """
    The classic exponential entity bomb: 10**levels copies of "lol".
    """
    lines = ['<?xml version="1.0"?>', "<!DOCTYPE rspec [", ' <!ENTITY lol0 "lol">']
    for i in range(1, levels + 1):
        lines.append(f' <!ENTITY lol{i} "' + f"&lol{i - 1};" * 10 + '">')
    lines.append("]>")
    lines.append(RSPEC.format(f"&lol{levels};"))
    return "\n".join(lines)


def quadraticBlowup(size: int = 100_000, references: int = 9_000) -> str:
    """
    One large entity referenced many times: quadratic, not exponential.
    """
    return (
        f'<!DOCTYPE rspec [<!ENTITY a "{"A" * size}">]>'
        + RSPEC.format("&a;" * references)
    )


class TestAccepted:
    """
    Plain documents parse, as text or bytes.
    """

    def test_text(self) -> None:
        """
        A C{str} with an encoding declaration (which would be a lie for
        decoded text) parses; so does one with a byte-order mark.
        """
        root = parseDocument('<?xml version="1.0" encoding="ISO-8859-1"?>\n<a x="\u00e9"/>')
        assert root.get("x") == "\u00e9"
        assert parseDocument("\ufeff<a/>").tag == "a"

    def test_bytes(self) -> None:
        """
        Bytes are decoded by their own declaration, UTF-16 included.
        """
        assert parseDocument('<a x="\u00e9"/>'.encode()).get("x") == "\u00e9"
        text = '<?xml version="1.0" encoding="UTF-16"?><a x="\u00e9"/>'
        assert parseDocument(text.encode("utf-16")).get("x") == "\u00e9"

    def test_commentsAndPIsDropped(self) -> None:
        """
        Comments and processing instructions are not part of the tree.
        """
        root = parseDocument("<!-- hello --><?pi x?><a><!-- c --><?pi y?><b/></a>")
        assert [child.tag for child in root] == ["b"]

    def test_depthLimit(self) -> None:
        """
        Nesting up to C{maxDepth} is fine, one more level is not.
        """
        assert parseDocument("<a>" * 5 + "</a>" * 5, maxDepth=5) is not None
        with pytest.raises(RSpecError, match="deeper than 5"):
            parseDocument("<a>" * 6 + "</a>" * 6, maxDepth=5)


class TestRefused:
    """
    Everything dangerous or unreadable is an L{RSpecError}.
    """

    def test_doctype(self) -> None:
        """
        Any DOCTYPE, even an empty one after comments and PIs, is refused.
        """
        for text in [
            "<!DOCTYPE rspec><rspec/>",
            '<?xml version="1.0"?>\n<!-- x --><?pi?>  <!DOCTYPE rspec [ ]><rspec/>',
            '<!DOCTYPE rspec SYSTEM "http://example.invalid/rspec.dtd"><rspec/>',
        ]:
            with pytest.raises(RSpecError, match="DOCTYPE"):
                parseDocument(text)

    def test_doctypeInOtherEncoding(self) -> None:
        """
        A DOCTYPE the byte scan cannot see (UTF-16) is caught after parsing,
        and its entity is not expanded.
        """
        text = (
            '<?xml version="1.0" encoding="UTF-16"?>'
            '<!DOCTYPE rspec [<!ENTITY e "expanded">]><rspec>&e;</rspec>'
        )
        with pytest.raises(RSpecError, match="DOCTYPE"):
            parseDocument(text.encode("utf-16"))

    def test_externalEntity(self, tmp_path: Path) -> None:
        """
        An external entity is refused and its file is never read into the
        result or the message, whatever the encoding.
        """
        secret = tmp_path / "secret.txt"
        secret.write_text("TOPSECRET")
        text = (
            f'<!DOCTYPE rspec [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
            + RSPEC.format("&x;")
        )
        for data in (text, text.encode(), ('<?xml version="1.0" encoding="UTF-16"?>' + text).encode("utf-16")):
            with pytest.raises(RSpecError) as caught:
                parseDocument(data)
            assert "TOPSECRET" not in caught.value.message

    def test_parameterEntity(self) -> None:
        """
        External parameter entities (the out-of-band exfiltration trick) are
        refused.
        """
        text = (
            '<!DOCTYPE rspec [<!ENTITY % p SYSTEM "http://example.invalid/x.dtd"> %p;]>'
            + RSPEC.format("")
        )
        with pytest.raises(RSpecError, match="DOCTYPE"):
            parseDocument(text)

    @pytest.mark.parametrize("bomb", [billionLaughs(), quadraticBlowup()])
    def test_bombsFast(self, bomb: str) -> None:
        """
        Entity bombs are refused by the DOCTYPE check, before any expansion
        (bench/bench_hostile_input.py prints how long it takes).
        """
        with pytest.raises(RSpecError, match="DOCTYPE"):
            parseDocument(bomb)

    def test_bombsBoundedMemory(self) -> None:
        """
        With the address space capped at 400 MiB, a billion-laughs bomb that
        would expand to gigabytes is refused normally, both through the
        public function and through libxml2 itself (the byte scan bypassed
        by UTF-16).
        """
        script = textwrap.dedent(
            f"""
            import resource, sys
            sys.path.insert(0, {str(REPO)!r})
            from tests.test_rspec_xml import billionLaughs, quadraticBlowup
            from rspec.xml import RSpecError, parseDocument
            from lxml import etree  # loaded before the cap
            resource.setrlimit(resource.RLIMIT_AS, (400 * 2**20, 400 * 2**20))
            bombs = [billionLaughs(12), quadraticBlowup()]
            bombs += [('<?xml version="1.0" encoding="UTF-16"?>' + b[b.index("<!DOCTYPE"):]).encode("utf-16")
                      for b in bombs]
            for bomb in bombs:
                try:
                    parseDocument(bomb)
                except RSpecError as e:
                    print("refused:", e.message[:60])
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("refused:") == 4, result.stdout

    def test_oversize(self) -> None:
        """
        The size cap is checked before parsing, in bytes, for text and bytes.
        """
        exact = RSPEC.format("x" * (MAX_SIZE - len(RSPEC.format(""))))
        assert len(exact.encode()) == MAX_SIZE
        assert parseDocument(exact).text.startswith("x")
        body = RSPEC.format("x" * (MAX_SIZE - len(RSPEC.format("")) + 1))
        for data in (body, body.encode()):
            with pytest.raises(RSpecError, match=f"larger than {MAX_SIZE} bytes"):
                parseDocument(data)
        with pytest.raises(RSpecError, match="larger than 100 bytes"):
            parseDocument("<a>" + "\u00e9" * 60 + "</a>", maxSize=100)
        assert parseDocument("<a>" + "e" * 50 + "</a>", maxSize=100).text == "e" * 50

    @pytest.mark.parametrize(
        "data",
        ["", "   ", "<a>", "<a></b>", "not xml", "<a/><b/>", "<a>&undefined;</a>", b"\xff\xfe\x00"],
    )
    def test_malformed(self, data: str | bytes) -> None:
        """
        Unreadable input is an L{RSpecError}, never an lxml exception.
        """
        with pytest.raises(RSpecError):
            parseDocument(data)

    @pytest.mark.parametrize("data", [None, 42, ["<a/>"]])
    def test_notText(self, data: object) -> None:
        """
        Only strings and bytes are documents.
        """
        with pytest.raises(RSpecError, match="must be a string"):
            parseDocument(data)  # type: ignore[arg-type]

    def test_longProlog(self) -> None:
        """
        A megabyte of whitespace or of processing instructions in front of
        the root is still parsed (bench/bench_hostile_input.py prints how
        long the DOCTYPE scan takes on them).
        """
        for data in (b" " * (MAX_SIZE - 10) + b"<a/>", b"<?p?>" * (MAX_SIZE // 6) + b"<a/>"):
            assert parseDocument(data).tag == "a"


class TestCompress:
    """
    C{geni_compressed} values.
    """

    def test_roundTrip(self) -> None:
        """
        base64 of an RFC 1950 zlib stream, readable by plain zlib.
        """
        import base64

        text = "<rspec>\u00e9</rspec>"
        value = compress(text)
        assert zlib.decompress(base64.b64decode(value)).decode() == text
        assert decompress(value) == text

    def test_decompressBounded(self) -> None:
        """
        A small value that inflates beyond the bound is refused.
        """
        import base64

        bomb = base64.b64encode(zlib.compress(b"\0" * 10_000_000)).decode()
        assert len(bomb) < 20_000
        with pytest.raises(RSpecError, match="inflates beyond"):
            decompress(bomb, maxSize=1_000_000)

    @pytest.mark.parametrize("value", ["!!!", "aGVsbG8=", compress("x")[:-4]])
    def test_decompressGarbage(self, value: str) -> None:
        """
        Not base64, not zlib, or truncated: refused.
        """
        with pytest.raises(RSpecError):
            decompress(value)


class TestURNs:
    """
    The URNs we issue.
    """

    def test_forms(self) -> None:
        """
        Node, manager and sliver URNs of an authority.
        """
        assert nodeURN("marvin.example", "42") == "urn:publicid:IDN+marvin.example+node+42"
        assert managerURN("marvin.example") == "urn:publicid:IDN+marvin.example+authority+am"
        assert sliverURN("marvin.example", 7) == "urn:publicid:IDN+marvin.example+sliver+7"

    def test_badNames(self) -> None:
        """
        Ids that cannot stand in a URN are a caller's bug.
        """
        for bad in ("a b", "a+b", "", "a/b"):
            with pytest.raises(ValueError):
                nodeURN("marvin.example", bad)

    def test_sliverId(self) -> None:
        """
        Our sliver URNs map back to schedule ids; others do not.
        """
        assert sliverIdFromURN("urn:publicid:IDN+Marvin.Example+sliver+7", "marvin.example") == 7
        for bad in (
            "urn:publicid:IDN+other.example+sliver+7",
            "urn:publicid:IDN+marvin.example:sub+sliver+7",
            "urn:publicid:IDN+marvin.example+node+7",
            "urn:publicid:IDN+marvin.example+sliver+abc",
            "urn:publicid:IDN+marvin.example+sliver+" + "9" * 30,
            "garbage",
        ):
            with pytest.raises(ValueError):
                sliverIdFromURN(bad, "marvin.example")
