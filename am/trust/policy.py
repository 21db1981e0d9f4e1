# -*- test-case-name: tests.test_trust_gate -*-
"""
Which credential each AM API v3 method needs: one table.

The privileges follow what gcf's reference AM checks (the operation each
method maps to, and the privileges that grant that operation in gcf's
C{rights.py}), with C{*} granting everything as ProtoGENI authorities
intend:

  - C{createsliver} (Allocate, Provision, PerformOperationalAction),
    C{deleteslice} (Delete), C{renewsliver} (Renew) and
    C{getsliceresources} (Describe, Status) are granted by C{embed},
    C{control} or C{sa}, which gcf and GENI slice authorities put in slice
    credentials.  C{refresh}, C{bind} and C{info} alone do not grant them.
  - ListResources needs a user credential (gcf user credentials carry
    C{refresh}, C{resolve} and C{info}; ProtoGENI's carry C{*}).
  - Shutdown is an operator's emergency stop: it needs C{shutdown} (or
    C{*}), either in a slice credential for that slice or in an operator
    credential whose target is this AM.
  - GetVersion takes no credentials in v3; it needs only an authenticated
    caller.
"""

from __future__ import annotations

from attrs import frozen

from am.trust.errors import UNSUPPORTED, TrustError

NONE = "none"
USER = "user"
SLICE = "slice"

SLICE_WRITE = frozenset({"embed", "control", "sa", "*"})
SLICE_READ = frozenset({"embed", "control", "sa", "*"})
USER_READ = frozenset({"info", "resolve", "listresources", "*"})
OPERATOR = frozenset({"shutdown", "*"})


@frozen
class Rule:
    """
    What one method needs.

    @ivar kind: L{NONE} (an authenticated caller is enough), L{USER} (a user
        credential owned by the caller) or L{SLICE} (a slice credential
        owned by the caller, for the slice the method acts on).
    @ivar privileges: any one of these in the credential grants the method.
    @ivar operator: may an operator credential (target: this AM) carrying
        one of C{privileges} stand in for a slice credential?
    """

    kind: str
    privileges: frozenset[str]
    operator: bool = False


RULES: dict[str, Rule] = {
    "GetVersion": Rule(NONE, frozenset()),
    "ListResources": Rule(USER, USER_READ),
    "Describe": Rule(SLICE, SLICE_READ),
    "Status": Rule(SLICE, SLICE_READ),
    "Allocate": Rule(SLICE, SLICE_WRITE),
    "Provision": Rule(SLICE, SLICE_WRITE),
    "PerformOperationalAction": Rule(SLICE, SLICE_WRITE),
    "Renew": Rule(SLICE, SLICE_WRITE),
    "Delete": Rule(SLICE, SLICE_WRITE),
    "Shutdown": Rule(SLICE, OPERATOR, operator=True),
}


def ruleFor(method: str) -> Rule:
    """
    The rule for C{method}.

    @raise TrustError: (UNSUPPORTED) for a method with no rule: anything
        not in the table is refused rather than allowed.
    """
    rule = RULES.get(method)
    if rule is None:
        raise TrustError(UNSUPPORTED, f"no access rule for method {method[:64]!r}")
    return rule
