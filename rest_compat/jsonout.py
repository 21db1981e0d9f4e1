# -*- test-case-name: tests.test_rest_jsonout -*-
"""
The legacy server's JSON (sorted keys, two-space indentation), faster.

C{json.dumps(..., indent=2)} cannot use C{json}'s C encoder: with an indent
it runs a pure-Python generator per value, about a third of the REST face's
rendering of a heartbeat reply. L{dumps} gives the same text by direct
recursion (strings still escaped by C{json}'s C function); anything it does
not know how to write goes to C{json.dumps} itself, so the bytes and the
errors stay C{json}'s.
"""

from __future__ import annotations

import json
from typing import Any

_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_WORDS = {None: "null", True: "true", False: "false"}
# Nesting deeper than this is left to json (and its recursion checks).
_DEPTH = 64


class _Unusual(Exception):
    """
    A value this module leaves to C{json}.
    """


def dumps(value: Any) -> str:
    """
    C{json.dumps(value, sort_keys=True, indent=2)}.
    """
    try:
        out: list[str] = []
        _write(value, out, "\n", 0)
        return "".join(out)
    except (_Unusual, TypeError):
        return json.dumps(value, sort_keys=True, indent=2)


def _write(value: Any, out: list[str], newline: str, depth: int) -> None:
    kind = type(value)
    if kind is str:
        out.append(_quote(value))
    elif kind is int:
        out.append(int.__repr__(value))
    elif kind is bool or value is None:
        out.append(_WORDS[value])
    elif depth >= _DEPTH:
        raise _Unusual()
    elif kind is dict:
        if not value:
            out.append("{}")
            return
        inner = newline + "  "
        out.append("{")
        first = True
        for key in sorted(value):
            if type(key) is not str:
                raise _Unusual()
            out.append(inner if first else "," + inner)
            first = False
            out.append(_quote(key))
            out.append(": ")
            _write(value[key], out, inner, depth + 1)
        out.append(newline)
        out.append("}")
    elif kind is list or kind is tuple:
        if not value:
            out.append("[]")
            return
        inner = newline + "  "
        out.append("[")
        first = True
        for item in value:
            out.append(inner if first else "," + inner)
            first = False
            _write(item, out, inner, depth + 1)
        out.append(newline)
        out.append("]")
    else:
        # floats (NaN, infinities), subclasses, anything else: json's own way.
        raise _Unusual()
