"""
L{rest_compat.jsonout.dumps} writes exactly what C{json.dumps(sort_keys=True,
indent=2)} writes (the legacy server's JSON), for every JSON-shaped value.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rest_compat import render
from rest_compat.jsonout import dumps

_leaves = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text()
)
_keys = st.text() | st.integers() | st.booleans() | st.none()
_values = st.recursive(
    _leaves,
    lambda children: st.lists(children, max_size=5) | st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=8), children, max_size=5)
    | st.dictionaries(_keys, children, max_size=3),
    max_leaves=40,
)


def _json(value: Any) -> Any:
    try:
        return json.dumps(value, sort_keys=True, indent=2)
    except TypeError as e:
        return ("TypeError", str(e))


def _ours(value: Any) -> Any:
    try:
        return dumps(value)
    except TypeError as e:
        return ("TypeError", str(e))


@settings(max_examples=500, deadline=None)
@given(_values)
def test_sameText(value: Any) -> None:
    """
    The same text, or the same error, as C{json}.
    """
    assert _ours(value) == _json(value)


class Colour(str, enum.Enum):
    RED = "red"


class Count(int):
    pass


def test_unusualValues() -> None:
    """
    Subclasses, sets, deep nesting and objects json refuses behave as in C{json}.
    """
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    for value in (
        {"c": Colour.RED, Colour.RED: 1}, [Count(3), True], {"a": {1, 2}}, object(), deep,
        {"b": 1, "a": [{}, [], ""]}, {"x": float("nan"), "y": -0.0},
    ):
        assert _ours(value) == _json(value)


def test_renderEncode() -> None:
    """
    The REST face's bodies: that text, one newline, UTF-8.
    """
    body = {"tasks": [{"id": "1", "deployment_options": {"script": "é", "_k": None}}], "interfaces": {}}
    assert render.encode(body) == (json.dumps(body, sort_keys=True, indent=2) + "\n").encode("utf-8")
