"""
Tests for L{rest_compat.render}'s encoders: the fast paths give the bytes
the legacy encoding (sorted keys, two-space indent) gives.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from am.core.model import Booked, Schedule
from rest_compat import render


def legacy(body: Any) -> bytes:
    return (json.dumps(body, sort_keys=True, indent=2) + "\n").encode("utf-8")


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(), st.floats(),
    st.sampled_from([1.0, -0.0, 1e300, float("inf")]),
)
keys = st.one_of(st.text(), st.sampled_from(["a", "b", "é", 'q"', "\u2028"]))
bodies = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4), st.tuples(inner),
        st.dictionaries(st.integers(0, 3), inner, max_size=2),
    ),
    max_leaves=20,
)


@settings(max_examples=500)
@given(bodies)
def test_encodeAsLegacy(body: Any) -> None:
    """
    Plain bodies (the fast path) and anything else (tuples, non-string keys,
    NaN: the fallback) encode to the bytes of C{json.dumps(sort_keys=True, indent=2)}.
    """
    assert render.encode(body) == legacy(body)


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


@settings(max_examples=300)
@given(st.lists(st.builds(
    Schedule,
    expid=st.integers(1, 10**9), nodeid=node_ids, start=st.integers(-(2**62), 2**62),
    stop=st.integers(-(2**62), 2**62), status=st.sampled_from(["defined", "started", "failed"]),
    reason=st.one_of(st.just(""), st.text()), shared=st.booleans(),
    deploymentOptions=st.dictionaries(keys, bodies, max_size=4), id=st.integers(1, 10**9),
), max_size=4))
def test_heartbeatJSON(tasks: list) -> None:
    """
    The heartbeat reply, written straight from the schedules, is the legacy
    encoding of C{{"interfaces": {}, "tasks": [render.task(t)...]}}, options
    only C{json} encodes (NaN, tuples) included.
    """
    assert render.heartbeatJSON(tasks) == legacy({"interfaces": {}, "tasks": [render.task(t) for t in tasks]})
