# -*- test-case-name: tests.test_rest_params,tests.test_slots -*-
"""
Checking the loosely typed values that arrive from form fields, JSON and XML-RPC.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, TypeVar

import attrs

from am.core.errors import BadRequest, NotFound

T = TypeVar("T")

# ASCII digits (\d would take any script's), as the OpenAPI document says.
_INTEGER = re.compile(r"-?[0-9]{1,18}")
# SQLite stores signed 64-bit integers; stay well inside.
LIMIT = 2**62


def integer(name: str, value: Any, minimum: Optional[int] = None) -> int:
    """
    Accept ints, integral floats and integral strings (form fields); refuse
    everything else by name, so the caller learns which parameter was bad.
    """
    if isinstance(value, bool) or value is None:
        raise BadRequest(f"{name} must be an integer", parameter=name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not _INTEGER.fullmatch(text):
            raise BadRequest(f"{name} must be an integer", parameter=name)
        value = int(text)
    if not isinstance(value, int) or not -LIMIT < value < LIMIT:
        raise BadRequest(f"{name} must be an integer", parameter=name)
    if minimum is not None and value < minimum:
        raise BadRequest(f"{name} must be at least {minimum}", parameter=name)
    return value


def identifier(value: Any) -> Optional[int]:
    """
    A row id from a path or a parameter, or C{None} when it cannot be one
    (the caller answers "not found").
    """
    text = str(value).strip()
    if not _INTEGER.fullmatch(text):
        return None
    number = int(text)
    return number if 0 < number < LIMIT else None


def lookup(fetch: Callable[[int], Optional[T]], value: Any, message: str) -> T:
    """
    The row C{fetch} finds for the id in C{value}, or L{NotFound} with C{message}.
    """
    key = identifier(value)
    row = fetch(key) if key is not None else None
    if row is None:
        raise NotFound(message)
    return row


def unstorable(value: Any, name: str, depth: int = 0) -> Optional[str]:
    """
    The name (dotted into objects, indexed into lists) of the first string in
    C{value} that no store can hold -- a lone surrogate (from a JSON C{\\ud800}
    escape; not UTF-8) or a NUL character (PostgreSQL text refuses it) -- or
    C{None}. Keys are checked like values; attrs instances field by field.
    """
    if isinstance(value, str):
        if "\x00" in value:
            return name
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return name
        return None
    if depth > 64:
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if unstorable(key, name, depth + 1) is not None:
                return f"{name} (a key in it)"
            found = unstorable(item, f"{name}.{key}", depth + 1)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            found = unstorable(item, f"{name}[{index}]", depth + 1)
            if found is not None:
                return found
    elif value is None or isinstance(value, (int, float)):
        return None
    elif attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            found = unstorable(getattr(value, field.name), field.name, depth + 1)
            if found is not None:
                return found
    return None


_SCALARS = frozenset({int, float, bool, type(None)})
# The field names of attrs classes met (None: not an attrs class); few classes.
_FIELDS: dict[type, Optional[tuple[str, ...]]] = {}


def _text(value: str) -> bool:
    return "\x00" not in value and (value.isascii() or unstorable(value, "") is None)


def _fieldNames(kind: type) -> Optional[tuple[str, ...]]:
    try:
        return _FIELDS[kind]
    except KeyError:
        names = tuple(f.name for f in attrs.fields(kind)) if attrs.has(kind) else None
        if len(_FIELDS) < 1000:
            _FIELDS[kind] = names
        return names


def _storable(value: Any, depth: int = 0) -> bool:
    """
    Whether L{unstorable} would find nothing (the common case, without
    building a name for every field on the way). Runs for every argument of
    every command: strings and numbers inside containers are checked in the
    loop, without a call each.
    """
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind in _SCALARS or depth > 64:
        return True
    if kind is dict:
        items: Any = value.items()
    elif kind is list or kind is tuple:
        items = value
    else:
        names = _fieldNames(kind)
        if names is None:
            return unstorable(value, "", depth) is None
        items = [getattr(value, name) for name in names]
    depth += 1
    for item in items:
        if kind is dict:
            key, item = item
            if not (_text(key) if type(key) is str else _storable(key, depth)):
                return False
        itemKind = type(item)
        if itemKind is str:
            if not _text(item):
                return False
        elif itemKind not in _SCALARS and not _storable(item, depth):
            return False
    return True


def storable(value: Any) -> bool:
    """
    Whether every string in C{value} can be stored (L{requireStorable} says
    which one cannot): one walk for many values at once.
    """
    return _storable(value)


def requireStorable(name: str, value: Any) -> None:
    """
    Refuse text the stores cannot hold, naming the parameter.

    @raise BadRequest: naming the field (C{parameter} in its extra).
    """
    if _storable(value):
        return
    found = unstorable(value, name)
    if found is not None:
        where = found or "A parameter with an empty name"
        raise BadRequest(
            f"{where} holds text that cannot be stored (a lone surrogate or a NUL character).",
            parameter=found,
        )
