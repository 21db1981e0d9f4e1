"""
Tests for L{rest_compat.render}'s encoders: the fast paths give the bytes
the legacy encoding (sorted keys, two-space indent) gives.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from am.core.model import Booked
from rest_compat import render


def legacy(body: Any) -> bytes:
    return (json.dumps(body, sort_keys=True, indent=2) + "\n").encode("utf-8")


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.text(), st.floats(allow_nan=False)
)
flat = st.dictionaries(st.text(), scalars, max_size=5)
nested = st.one_of(flat, st.dictionaries(st.text(), st.lists(scalars, max_size=2), max_size=2))


@settings(max_examples=300)
@given(st.lists(st.one_of(flat, nested, scalars), max_size=5))
def test_encodeListsAsLegacy(rows: list) -> None:
    """
    Lists of flat objects (the fast path) and anything else (the fallback)
    encode to the same bytes as C{json.dumps(sort_keys=True, indent=2)}.
    """
    assert render.encode(rows) == legacy(rows)


def test_encodeUnsortableKeys() -> None:
    """
    Keys that do not sort fail as C{json} fails, not differently.
    """
    import pytest

    with pytest.raises(TypeError):
        render.encode([{1: 2, "a": 3}])
    assert render.encode([{1: 2}]) == legacy([{1: 2}])


node_ids = st.one_of(
    st.integers(0, 10**9).map(str), st.sampled_from(["01", "007", "x", "a\"b", "²", "１", "-1", "", "é"]),
    st.text(),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(1, 10**9), node_ids, st.integers(-(2**62), 2**62),
                          st.integers(-(2**62), 2**62), st.integers(0, 10**9)), max_size=5))
def test_compactJSON(rows: list) -> None:
    """
    The calendar rows, encoded straight from the store's tuples, are the
    legacy encoding of C{{nodeid, start, stop, ownerid}} with decimal node
    ids as numbers.
    """
    booked = [Booked(*r) for r in rows]
    dicts = [{"nodeid": render.nodeId(b.nodeid), "start": b.start, "stop": b.stop, "ownerid": b.ownerid}
             for b in booked]
    assert render.compactJSON(booked) == legacy(dicts)
