# -*- test-case-name: tests.test_nodefilter -*-
"""
The C{nodetypes} filter grammar: which nodes an experiment may run on.

Grammar (C{|} binds tightest, then C{-}, then C{,}), as in legacy Marvin::

    filter := term ("," term)*          AND of the non-empty terms
    term   := "" | ["-"] group           "-" negates the whole OR group
    group  := atom ("|" atom)*           OR
    atom   := tag ":" value              exact, case-sensitive equality

A node (a mapping tag -> value) matches when every positive group has an
atom that holds and no negated group has one.

Legacy quirks, each decided deliberately:

 - B{Whitespace} is trimmed around terms, the C{-}, atoms, tags and values.
   Legacy trimmed only whole comma terms, so C{"type:a | type:b"} never
   matched C{type:b} and C{" -model:x"} was a positive term on tag C{-model}.
   Whitespace inside a tag or value (C{"my tag:a b"}) is kept.
 - B{Empty terms} (C{""}, C{"a:b,,c:d"}, trailing commas, only whitespace)
   are ignored, as legacy did. The empty filter matches every node.
 - B{A lone C{-}} (C{"-"}, C{"-,a:b"}) is a syntax error. Legacy silently
   ignored negated terms of up to two characters.
 - B{An atom without C{:}}, or with an empty tag or value, is a syntax
   error. Legacy broke the SQL parameter count (409 or 500).
 - B{The first C{:} splits} tag and value; the value may hold further
   colons (C{"address:fe80::1"}). A tag never holds C{:}, so this is
   unambiguous. Legacy broke on a second colon.
 - B{A tag may not start with C{-}}: C{"a:b|-c:d"} and C{"--a:b"} are syntax
   errors, not a silent tag C{-c}. A value may (C{"longitude:-3.70"}).
 - Tags hold anything but C{,|:}; values anything but C{,|}; neither has
   whitespace at its ends. B{Control characters} (C0 but tab, line feed,
   vertical tab, form feed and carriage return; DEL; C1) are a syntax error
   anywhere: C{str.strip} would trim some of them and not others, and no
   inventory tag holds them (the OpenAPI document states the same rule). Values compare case-sensitively, as in legacy
   (the inventory lower-cases most tags, so C{country:ES} matches nothing).

The implicit C{-type:deployed} term of the deployment-repository rule is
added with L{Filter.withTerm}; L{Filter.requires} finds the C{type:deployed}
AND-term that makes the rule refuse instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen
from attrs.validators import instance_of

__all__ = ["Atom", "Group", "Filter", "FilterSyntaxError", "parse"]

# Refused anywhere in an expression (see the module docstring).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")


class FilterSyntaxError(ValueError):
    """
    A C{nodetypes} expression could not be parsed.

    @ivar position: 0-based index into the input of the offending character
        (the input's length when the input ended too early).
    @ivar expected: what the parser wanted there, e.g. C{"':'"}.
    """

    def __init__(self, position: int, expected: str) -> None:
        super().__init__(f"nodetypes: expected {expected} at position {position}")
        self.position = position
        self.expected = expected


def _isTrimmed(text: str) -> bool:
    """
    Whether C{text} is non-empty and has no whitespace at its ends.
    """
    return bool(text) and text.strip() == text


def _checkTag(instance: object, attribute: Any, tag: Any) -> None:
    """
    Refuse tags that would not print and parse back to themselves.
    """
    if not (
        isinstance(tag, str)
        and _isTrimmed(tag)
        and not tag.startswith("-")
        and not any(c in tag for c in ",|:")
        and not _CONTROL.search(tag)
    ):
        raise ValueError(f"invalid nodetypes tag {tag!r}")


def _checkValue(instance: object, attribute: Any, value: Any) -> None:
    """
    Refuse values that would not print and parse back to themselves.
    """
    if not (
        isinstance(value, str) and _isTrimmed(value) and not any(c in value for c in ",|")
        and not _CONTROL.search(value)
    ):
        raise ValueError(f"invalid nodetypes value {value!r}")


def _tupleOf(items: Iterable[Any]) -> tuple:
    """
    The converter of the AST's sequences (typed, unlike C{tuple}, for checkers).
    """
    return tuple(items)


def _checkAll(kind: type, nonEmpty: bool):
    """
    A validator requiring a tuple of C{kind} instances, so every AST prints.
    """

    def check(instance: object, attribute: Any, items: tuple) -> None:
        if (nonEmpty and not items) or not all(isinstance(i, kind) for i in items):
            raise ValueError(f"invalid nodetypes {attribute.name}: {items!r}")

    return check


@frozen
class Atom:
    """
    C{tag:value}: true for a node whose C{tag} has exactly this C{value}.
    """

    tag: str = field(validator=_checkTag)
    value: str = field(validator=_checkValue)

    def holds(self, tags: Mapping[str, str]) -> bool:
        """
        Whether the node described by C{tags} has this tag with this value.
        """
        return tags.get(self.tag) == self.value

    def __str__(self) -> str:
        """
        C{tag:value}, the form L{parse} reads.
        """
        return f"{self.tag}:{self.value}"


@frozen
class Group:
    """
    An OR of atoms; a negated group is true when none of its atoms is.
    """

    atoms: tuple[Atom, ...] = field(converter=_tupleOf, validator=_checkAll(Atom, True))
    negated: bool = field(default=False, validator=instance_of(bool))

    def anyHolds(self, tags: Mapping[str, str]) -> bool:
        """
        Whether at least one atom holds for C{tags}, ignoring C{negated}.
        """
        return any(atom.holds(tags) for atom in self.atoms)

    def __str__(self) -> str:
        """
        The atoms joined by C{|}, after a C{-} when negated.
        """
        return ("-" if self.negated else "") + "|".join(map(str, self.atoms))


@frozen
class Filter:
    """
    An AND of groups. With no groups it matches every node.
    """

    groups: tuple[Group, ...] = field(
        default=(), converter=_tupleOf, validator=_checkAll(Group, False)
    )

    def matches(self, tags: Mapping[str, str]) -> bool:
        """
        Whether a node with these C{tags} (one value per tag) passes: every
        positive group has a true atom and no negated group has one.
        """
        return all(group.anyHolds(tags) != group.negated for group in self.groups)

    def requires(self, tag: str, value: str) -> bool:
        """
        Whether some positive AND-term is exactly C{tag:value} alone: the
        legacy test "the filter asks for type:deployed". An OR group that
        merely contains the atom does not count.
        """
        return any(
            not group.negated and group.atoms == (Atom(tag, value),)
            for group in self.groups
        )

    def withTerm(self, group: Group) -> Filter:
        """
        This filter AND C{group}, e.g. the implicit C{-type:deployed}. Adding a
        group already present returns the filter unchanged.
        """
        if group in self.groups:
            return self
        return Filter(self.groups + (group,))

    def __str__(self) -> str:
        """
        The canonical form: no spaces, which L{parse} maps back to this filter.
        """
        return ",".join(map(str, self.groups))


class _Parser:
    """
    A recursive-descent parser over one input string; C{_pos} is the cursor.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def _peek(self) -> str:
        """
        The character under the cursor, or C{""} at the end of the input.
        """
        return self._text[self._pos : self._pos + 1]

    def _skipSpace(self) -> None:
        """
        Move the cursor past whitespace (as C{str.isspace} and C{str.strip} see it).
        """
        while self._peek().isspace():
            self._pos += 1

    def _scanUntil(self, stops: str) -> tuple[int, str]:
        """
        Skip whitespace, then take characters up to one of C{stops} or the end.

        @return: the start position and the taken text, right-trimmed.
        """
        self._skipSpace()
        start = self._pos
        while self._pos < len(self._text) and self._text[self._pos] not in stops:
            self._pos += 1
        return start, self._text[start : self._pos].rstrip()

    def filter(self) -> Filter:
        """
        Parse the whole input; empty terms are skipped.
        """
        groups = []
        while True:
            self._skipSpace()
            if self._peek() not in (",", ""):
                groups.append(self._term())
            # A term stops only at "," or at the end.
            if self._pos == len(self._text):
                return Filter(tuple(groups))
            self._pos += 1

    def _term(self) -> Group:
        """
        Parse one non-empty comma term: an optional C{-}, then an OR group.
        """
        negated = self._peek() == "-"
        if negated:
            self._pos += 1
        atoms = [self._atom()]
        while self._peek() == "|":
            self._pos += 1
            atoms.append(self._atom())
        return Group(tuple(atoms), negated)

    def _atom(self) -> Atom:
        """
        Parse C{tag:value}, trimming both; the first C{:} is the separator.
        """
        start, tag = self._scanUntil(",|:")
        if not tag or tag.startswith("-"):
            raise FilterSyntaxError(start, "a tag")
        if self._peek() != ":":
            raise FilterSyntaxError(self._pos, "':'")
        self._pos += 1
        start, value = self._scanUntil(",|")
        if not value:
            raise FilterSyntaxError(start, "a value")
        return Atom(tag, value)


def parse(text: str) -> Filter:
    """
    Parse a C{nodetypes} expression.

    @raise FilterSyntaxError: for any malformed input, including a non-string.
    """
    if not isinstance(text, str):
        raise FilterSyntaxError(0, "a string")
    control = _CONTROL.search(text)
    if control is not None:
        raise FilterSyntaxError(control.start(), "a printable character")
    return _Parser(text).filter()
