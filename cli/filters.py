# -*- test-case-name: tests.test_cli_units -*-
"""
The C{nodetypes} filter grammar, read on the client for C{marvin nodes
--filter} (the list of nodes has no server-side filter). Bookings send the
expression to the server, which alone decides what it books; this copy only
narrows a listing, and follows the grammar of docs/scheduling.md:
C{,} is AND, C{|} is OR (binds tightest), a leading C{-} negates a group,
an atom is C{tag:value} (exact, case-sensitive).
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["FilterError", "matches"]


class FilterError(ValueError):
    pass


def _groups(expression: str) -> list[tuple[bool, list[tuple[str, str]]]]:
    groups = []
    for term in expression.split(","):
        term = term.strip()
        if not term:
            continue
        negated = term.startswith("-")
        if negated:
            term = term[1:].strip()
        atoms = []
        for atom in term.split("|"):
            tag, sep, value = atom.strip().partition(":")
            if not sep or not tag.strip() or not value.strip() or tag.strip().startswith("-"):
                raise FilterError(f"bad filter {expression!r}: {atom.strip()!r} is not tag:value")
            atoms.append((tag.strip(), value.strip()))
        groups.append((negated, atoms))
    return groups


def matches(expression: str, node: Mapping[str, Any]) -> bool:
    """
    Whether C{node} (a node as C{GET /v1/resources} shows it, tags flattened
    onto it) passes C{expression}; the empty expression passes everything.

    @raise FilterError: for a malformed expression.
    """
    for negated, atoms in _groups(expression):
        hit = any(str(node.get(tag, "")) == value and tag in node for tag, value in atoms)
        if hit == negated:
            return False
    return True
