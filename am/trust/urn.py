# -*- test-case-name: tests.test_trust_urn -*-
"""
GENI URNs: C{urn:publicid:IDN+<authority>+<type>+<name>}.

Only the structure is checked when reading a URN (clients from several
federations send names longer than gcf allows); the stricter gcf name rules
are applied when I{we} make URNs, in L{am.devtools.authority}.
"""

from __future__ import annotations

import functools
import re

from attrs import frozen

PREFIX = "urn:publicid:IDN+"
MAX_LENGTH = 512

_FORBIDDEN = re.compile(r"[\s?/#\x00-\x1f\x7f]")
_AUTHORITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_%~-]*$")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_NAME = re.compile(r"^[A-Za-z0-9_.:%~-][A-Za-z0-9_.:%~@=-]*$")

# The name rules gcf applies (urn_util.is_valid_urn_bytype), for URNs we issue.
USER_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,7}$")
SLICE_NAME = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]{0,18}$")


@frozen
class URN:
    """
    A parsed GENI URN.

    @ivar authority: the authority part, e.g. C{geni:gpo:gcf}; sub-authorities
        are separated by C{:}.
    @ivar type: the object type, e.g. C{user}, C{slice}, C{authority}.
    @ivar name: the object name.
    """

    authority: str
    type: str
    name: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.authority}+{self.type}+{self.name}"

    def key(self) -> tuple[str, str, str]:
        """
        A comparison key: authority and type compare case-insensitively (as
        the URN rules say), the name exactly.
        """
        return (self.authority.lower(), self.type.lower(), self.name)


def parseURN(text: object) -> URN:
    """
    Parse a GENI URN.

    @raise ValueError: if C{text} is not a string of the form
        C{urn:publicid:IDN+authority+type+name}.
    """
    if not isinstance(text, str):
        raise ValueError("a URN must be a string")
    return _parse(text)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> URN:
    if len(text) > MAX_LENGTH:
        raise ValueError("URN is too long")
    if text[: len(PREFIX)].lower() != PREFIX.lower():
        raise ValueError("not a GENI URN (must start with urn:publicid:IDN+)")
    if _FORBIDDEN.search(text):
        raise ValueError("URN contains whitespace, '?', '/', '#' or control characters")
    parts = text[len(PREFIX) :].split("+")
    if len(parts) != 3:
        raise ValueError("URN must have the form urn:publicid:IDN+authority+type+name")
    authority, kind, name = parts
    if not _AUTHORITY.match(authority):
        raise ValueError("URN has an invalid authority part")
    if not _TYPE.match(kind):
        raise ValueError("URN has an invalid type part")
    if not _NAME.match(name):
        raise ValueError("URN has an invalid name part")
    return URN(authority, kind, name)


def isURN(text: object) -> bool:
    """
    Is C{text} a well-formed GENI URN?
    """
    try:
        parseURN(text)
    except ValueError:
        return False
    return True


def sameURN(a: str | URN, b: str | URN) -> bool:
    """
    Do C{a} and C{b} name the same object?  Malformed URNs name nothing.
    """
    try:
        ua = a if isinstance(a, URN) else parseURN(a)
        ub = b if isinstance(b, URN) else parseURN(b)
    except ValueError:
        return False
    return ua.key() == ub.key()


def authorityCovers(authority: URN, target: URN) -> bool:
    """
    May C{authority} speak for C{target}?

    True when C{authority} is of type C{authority} and its authority part is
    C{target}'s authority or a parent namespace of it: C{geni:gpo+authority+sa}
    covers C{geni:gpo+slice+s1} and C{geni:gpo:project+slice+s1}, but not
    C{geni:gpox+slice+s1}.
    """
    if authority.type.lower() != "authority":
        return False
    mine = authority.authority.lower()
    theirs = target.authority.lower()
    return theirs == mine or theirs.startswith(mine + ":")


def makeURN(authority: str, kind: str, name: str) -> str:
    """
    Build a URN and check it parses.

    @raise ValueError: if the result is not a valid URN.
    """
    text = f"{PREFIX}{authority}+{kind}+{name}"
    parseURN(text)
    return text
