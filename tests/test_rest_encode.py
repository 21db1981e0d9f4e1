"""
L{rest_compat.render.encode} writes exactly what C{json.dumps(sort_keys=True,
indent=2)} writes (the legacy server's JSON), or fails as it does, for
values off the plain path (tests/test_rest_render.py has the property test).
"""

from __future__ import annotations

import enum
import json
from typing import Any

from rest_compat import render


def _json(value: Any) -> Any:
    try:
        return (json.dumps(value, sort_keys=True, indent=2) + "\n").encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        return type(e).__name__


def _ours(value: Any) -> Any:
    try:
        return render.encode(value)
    except (TypeError, ValueError, RecursionError) as e:
        return type(e).__name__


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
