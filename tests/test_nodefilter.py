"""
Tests for L{am.core.nodefilter}, the C{nodetypes} filter grammar.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from am.core.nodefilter import Atom, Filter, FilterSyntaxError, Group, parse


def _f(*groups: Group) -> Filter:
    """
    Shorthand for a filter built from groups.
    """
    return Filter(groups)


def _g(*pairs: str, negated: bool = False) -> Group:
    """
    Shorthand for a group of C{"tag:value"} atoms, split at the first C{:}.
    """
    return Group(tuple(Atom(*p.split(":", 1)) for p in pairs), negated)


# -- plain unit tests --------------------------------------------------------


class TestLegacyExamples:
    """
    The examples of the legacy specification (section 6) parse and match
    as documented there.
    """

    def test_readme(self) -> None:
        """
        C{type:testing,country:es,-model:apu2d} is three AND-ed terms.
        """
        f = parse("type:testing,country:es,-model:apu2d")
        assert f == _f(_g("type:testing"), _g("country:es"), _g("model:apu2d", negated=True))
        assert f.matches({"type": "testing", "country": "es", "model": "apu1d"})
        assert not f.matches({"type": "testing", "country": "es", "model": "apu2d"})
        assert not f.matches({"type": "testing", "country": "no"})
        assert f.matches({"type": "testing", "country": "es"})

    def test_orGroupsAndNegation(self) -> None:
        """
        C{|} binds tighter than C{-}, which binds tighter than C{,}.
        """
        f = parse("type:testing|type:deployed,-country:es|country:no,model:apu2d")
        assert f == _f(
            _g("type:testing", "type:deployed"),
            _g("country:es", "country:no", negated=True),
            _g("model:apu2d"),
        )
        assert f.matches({"type": "deployed", "country": "se", "model": "apu2d"})
        assert f.matches({"type": "testing", "country": "se", "model": "apu2d"})
        assert not f.matches({"type": "deployed", "country": "no", "model": "apu2d"})
        assert not f.matches({"type": "deployed", "country": "es", "model": "apu2d"})
        assert not f.matches({"type": "storage", "country": "se", "model": "apu2d"})

    def test_officialClient(self) -> None:
        """
        The form the official Python client builds: OR-ed countries, then a type.
        """
        f = parse("country:se|country:no,type:deployed")
        assert f.matches({"country": "no", "type": "deployed"})
        assert not f.matches({"country": "es", "type": "deployed"})

    def test_legacyUnitTestFilter(self) -> None:
        """
        Several negated terms each exclude their value.
        """
        f = parse("status:test,-status:foo,-status:bar")
        assert f.matches({"status": "test"})
        assert not f.matches({"status": "foo"})
        assert not f.matches({"status": "bar"})
        assert not f.matches({})


class TestSemantics:
    """
    Precedence, negation and comparison rules.
    """

    def test_negationCoversWholeGroup(self) -> None:
        """
        C{-a:1|b:2} rejects a node on which any atom of the group holds.
        """
        f = parse("-a:1|b:2")
        assert f == _f(_g("a:1", "b:2", negated=True))
        assert not f.matches({"b": "2"})
        assert not f.matches({"a": "1"})
        assert f.matches({"a": "2", "b": "1"})

    def test_missingTag(self) -> None:
        """
        A node without the tag fails a positive atom and passes a negated one.
        """
        assert not parse("model:x").matches({})
        assert parse("-model:x").matches({})

    def test_caseSensitive(self) -> None:
        """
        Values compare by exact, case-sensitive equality, tags too.
        """
        assert not parse("country:ES").matches({"country": "es"})
        assert not parse("Country:es").matches({"country": "es"})
        assert not parse("country:e").matches({"country": "es"})

    @pytest.mark.parametrize("text", ["", "   ", ",", " , ,\t", ",,,"])
    def test_emptyMatchesEverything(self, text: str) -> None:
        """
        An expression of only whitespace and commas has no groups and
        matches every node.
        """
        f = parse(text)
        assert f == Filter()
        assert f.matches({}) and f.matches({"type": "deployed"})
        assert str(f) == ""


class TestQuirkDecisions:
    """
    Each deliberate departure from, or agreement with, the legacy parser.
    """

    def test_whitespaceInsideOrGroup(self) -> None:
        """
        Whitespace around atoms in a C{|} group is trimmed (legacy kept it and
        C{type:a | type:b} never matched C{type:b}).
        """
        f = parse("type:a | type:b")
        assert f == parse("type:a|type:b")
        assert f.matches({"type": "b"})

    def test_whitespaceBeforeMinus(self) -> None:
        """
        C{" -model:x"} is a negated term (legacy: positive, tag C{-model}).
        """
        assert parse(" -model:x") == _f(_g("model:x", negated=True))
        assert parse("a:b, - model:x") == _f(_g("a:b"), _g("model:x", negated=True))

    def test_whitespaceAroundColonAndInside(self) -> None:
        """
        Tags and values are trimmed at their ends; inner whitespace stays.
        """
        assert parse(" my tag : a b ") == _f(Group((Atom("my tag", "a b"),)))

    def test_emptyTermsIgnored(self) -> None:
        """
        Double, leading and trailing commas add nothing.
        """
        assert parse(",a:b,,c:d,") == parse("a:b,c:d")

    def test_colonInValue(self) -> None:
        """
        The first C{:} splits; later colons belong to the value.
        """
        assert parse("address:fe80::1") == _f(Group((Atom("address", "fe80::1"),)))
        assert parse("a:b:c") == _f(Group((Atom("a", "b:c"),)))
        assert parse("a::") == _f(Group((Atom("a", ":"),)))
        assert parse("address:fe80::1").matches({"address": "fe80::1"})
        assert str(parse("a : b:c ")) == "a:b:c"

    def test_valueMayStartWithMinus(self) -> None:
        """
        Only tags are barred from starting with C{-}; values are not.
        """
        assert parse("longitude:-3.70").matches({"longitude": "-3.70"})
        assert parse("-a:-b") == _f(_g("a:-b", negated=True))

    def test_canonicalForm(self) -> None:
        """
        C{str} prints no spaces, C{,} between groups, C{-} and C{|}.
        """
        assert str(parse(" a : b | c:d , - e:f ,,")) == "a:b|c:d,-e:f"


class TestSyntaxErrors:
    """
    Malformed expressions raise L{FilterSyntaxError} naming the position of
    the offending character and what was expected there.
    """

    @pytest.mark.parametrize(
        "text, position, expected",
        [
            ("country", 7, "':'"),
            ("type:testing,country", 20, "':'"),
            ("type:testing,country,model:x", 20, "':'"),
            ("type:testing|country ,x:y", 21, "':'"),
            ("a|b:c", 1, "':'"),
            ("a b", 3, "':'"),
            ("-x", 2, "':'"),
            (":x", 0, "a tag"),
            ("  :x", 2, "a tag"),
            ("a:b|-c:d", 4, "a tag"),
            ("a:b| - c:d", 5, "a tag"),
            ("--a:b", 1, "a tag"),
            ("-", 1, "a tag"),
            ("-,a:b", 1, "a tag"),
            ("- ", 2, "a tag"),
            ("a:b|", 4, "a tag"),
            ("a:b||c:d", 4, "a tag"),
            ("|a:b", 0, "a tag"),
            ("a:b,|", 4, "a tag"),
            ("a:", 2, "a value"),
            ("a:  ,b:c", 4, "a value"),
            ("a:|b:c", 2, "a value"),
            ("x:y,a:\t", 7, "a value"),
            # control characters, which str.strip would partly trim: refused anywhere
            ("0:\x1f", 2, "a printable character"),
            ("a:b\x00c", 3, "a printable character"),
            ("\x85a:b", 0, "a printable character"),
            ("a:b,c\x7f:d", 5, "a printable character"),
        ],
    )
    def test_errorPosition(self, text: str, position: int, expected: str) -> None:
        """
        Each malformed input fails at the documented position.
        """
        with pytest.raises(FilterSyntaxError) as info:
            parse(text)
        assert (info.value.position, info.value.expected) == (position, expected)
        assert str(info.value) == f"nodetypes: expected {expected} at position {position}"

    def test_isValueError(self) -> None:
        """
        Callers catching C{ValueError} also catch syntax errors.
        """
        assert issubclass(FilterSyntaxError, ValueError)

    @pytest.mark.parametrize("value", [None, b"type:testing", 5, ["a:b"], {"a": "b"}])
    def test_notAString(self, value: object) -> None:
        """
        A non-string (e.g. a JSON list in the request) fails at position 0.
        """
        with pytest.raises(FilterSyntaxError) as info:
            parse(value)  # type: ignore[arg-type]
        assert (info.value.position, info.value.expected) == (0, "a string")
        assert str(info.value) == "nodetypes: expected a string at position 0"


class TestDeploymentRule:
    """
    L{Filter.requires} and L{Filter.withTerm} serve the legacy
    deployment-repository rule (section 4.3 step 9).
    """

    @pytest.mark.parametrize(
        "text, result",
        [
            ("type:deployed", True),
            ("country:se|country:no,type:deployed", True),
            (" type : deployed ,", True),
            ("type:deployed|type:testing", False),
            ("-type:deployed", False),
            ("type:Deployed", False),
            ("type:deployed:x", False),
            ("", False),
        ],
    )
    def test_requires(self, text: str, result: bool) -> None:
        """
        Only a positive AND-term that is exactly the single atom counts.
        """
        assert parse(text).requires("type", "deployed") is result

    def test_withTermAddsImplicitReject(self) -> None:
        """
        Adding C{-type:deployed} excludes deployed nodes and prints last.
        """
        reject = Group((Atom("type", "deployed"),), negated=True)
        f = parse("country:se").withTerm(reject)
        assert str(f) == "country:se,-type:deployed"
        assert f.matches({"country": "se", "type": "testing"})
        assert not f.matches({"country": "se", "type": "deployed"})
        assert str(Filter().withTerm(reject)) == "-type:deployed"

    def test_withTermIdempotent(self) -> None:
        """
        A group already present is not added twice.
        """
        f = parse("-type:deployed")
        assert f.withTerm(_g("type:deployed", negated=True)) is f


class TestAST:
    """
    The AST classes are immutable and refuse values that would not print
    and parse back to themselves.
    """

    def test_frozen(self) -> None:
        """
        Nodes of the AST cannot be changed after construction.
        """
        f = parse("a:b")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            f.groups = ()  # type: ignore[misc]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            f.groups[0].atoms[0].value = "c"  # type: ignore[misc]
        assert hash(f) == hash(parse(" a : b "))

    def test_sequencesBecomeTuples(self) -> None:
        """
        Lists given to the constructors are stored as tuples.
        """
        atom = Atom("a", "b")
        assert Filter([Group([atom])]) == Filter((Group((atom,)),))

    @pytest.mark.parametrize(
        "tag, value",
        [("", "x"), ("-a", "x"), ("a:b", "x"), (" a", "x"), ("a|b", "x"),
         ("a", ""), ("a", "x,y"), ("a", "x|y"), ("a", "x "), (1, "x"), ("a", None),
         ("a\x01", "x"), ("a", "x\x9f")],
    )
    def test_invalidAtom(self, tag: object, value: object) -> None:
        """
        Tags and values outside the grammar are refused.
        """
        with pytest.raises(ValueError):
            Atom(tag, value)  # type: ignore[arg-type]

    def test_invalidGroupAndFilter(self) -> None:
        """
        An empty group, a non-bool negation and wrong element types are refused.
        """
        atom = Atom("a", "b")
        with pytest.raises(ValueError):
            Group(())
        with pytest.raises(ValueError):
            Group(("a:b",))  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            Group((atom,), "yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            Filter((atom,))  # type: ignore[arg-type]


# -- property tests -----------------------------------------------------------

_CONTROLS = "".join(map(chr, [*range(0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0)]))
_tags = (
    st.text(st.characters(exclude_characters=",|:" + _CONTROLS), min_size=1, max_size=8)
    .map(str.strip)
    .filter(lambda t: t and not t.startswith("-"))
)
_values = (
    st.text(st.characters(exclude_characters=",|" + _CONTROLS), min_size=1, max_size=8)
    .map(str.strip)
    .filter(bool)
)


def _filters(tags: st.SearchStrategy[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[Filter]:
    """
    Arbitrary filters over the given tags and values.
    """
    atoms = st.builds(Atom, tags, values)
    groups = st.builds(Group, st.lists(atoms, min_size=1, max_size=4), st.booleans())
    return st.builds(Filter, st.lists(groups, max_size=5))


_spaces = st.text(st.sampled_from(" \t\n\u00a0\u2003"), max_size=2)


@st.composite
def _noisyText(draw: st.DrawFn, f: Filter) -> str:
    """
    Render C{f} with whitespace around every token and stray empty terms.
    """
    terms = [draw(_spaces)]
    for group in f.groups:
        atoms = [
            draw(_spaces) + a.tag + draw(_spaces) + ":" + draw(_spaces) + a.value + draw(_spaces)
            for a in group.atoms
        ]
        terms.append((draw(_spaces) + "-" if group.negated else "") + "|".join(atoms))
        if draw(st.booleans()):
            terms.append(draw(_spaces))
    return ",".join(terms)


_grammarish = st.text(st.sampled_from("ab:,|- \t\u00a0"), max_size=20)


class TestProperties:
    """
    Properties over generated inputs and ASTs.
    """

    @settings(deadline=None)
    @given(st.one_of(st.text(), _grammarish))
    def test_anyTextParsesOrSyntaxError(self, text: str) -> None:
        """
        Arbitrary text either parses to a filter that prints and re-parses
        to itself, or raises L{FilterSyntaxError} at a position inside (or
        just past) the input.
        """
        try:
            f = parse(text)
        except FilterSyntaxError as e:
            assert 0 <= e.position <= len(text)
            assert e.expected in ("a tag", "':'", "a value", "a printable character")
        else:
            assert parse(str(f)) == f

    @settings(deadline=None)
    @given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
    def test_nonStringIsSyntaxError(self, value: object) -> None:
        """
        Any non-string input is a syntax error at position 0.
        """
        with pytest.raises(FilterSyntaxError) as info:
            parse(value)  # type: ignore[arg-type]
        assert info.value.position == 0

    @settings(deadline=None)
    @given(_filters(_tags, _values))
    def test_printParseRoundTrip(self, f: Filter) -> None:
        """
        Printing any AST and parsing the result gives the same AST.
        """
        assert parse(str(f)) == f

    @settings(deadline=None)
    @given(st.data())
    def test_whitespaceAndEmptyTermsIrrelevant(self, data: st.DataObject) -> None:
        """
        Whitespace around tokens and empty terms do not change the AST.
        """
        f = data.draw(_filters(_tags, _values))
        assert parse(data.draw(_noisyText(f))) == f

    @settings(deadline=None)
    @given(
        _filters(st.sampled_from(["type", "country", "model"]), st.sampled_from(["a", "b", "c"])),
        st.lists(
            st.dictionaries(st.sampled_from(["type", "country", "model"]), st.sampled_from(["a", "b", "c"])),
            max_size=8,
        ),
    )
    def test_matchesAgreesWithSetOracle(self, f: Filter, nodes: list[dict[str, str]]) -> None:
        """
        The nodes that match are those left by set algebra over the node
        population: intersect each positive group's union of atom hits,
        subtract each negated group's.
        """
        hits = {
            (tag, value): {i for i, n in enumerate(nodes) if (tag, value) in n.items()}
            for n in nodes for tag, value in n.items()
        }
        selected = set(range(len(nodes)))
        for group in f.groups:
            union = set().union(*(hits.get((a.tag, a.value), set()) for a in group.atoms))
            selected = selected - union if group.negated else selected & union
        assert {i for i, n in enumerate(nodes) if f.matches(n)} == selected
