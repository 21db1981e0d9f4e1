"""
The schedule state machine: every (from, to, actor) cell.
"""

from __future__ import annotations

import itertools

import pytest

from am.core import states
from am.core.errors import TransitionRefused
from am.core.states import Actor

EXPECTED_ALLOWED = {
    ("allocated", "defined"): {"owner", "admin"},
    ("allocated", "canceled"): {"owner", "admin", "scheduler"},
    ("allocated", "failed"): {"scheduler"},
    ("queued", "defined"): {"scheduler"},
    ("queued", "canceled"): {"owner", "admin", "scheduler"},
    ("defined", "canceled"): {"owner", "admin", "scheduler"},
    ("defined", "requested"): {"scheduler"},
    ("defined", "deployed"): {"node"},
    ("defined", "delayed"): {"node"},
    ("defined", "started"): {"node"},
    ("defined", "failed"): {"node", "scheduler"},
    ("requested", "deployed"): {"node"},
    ("requested", "delayed"): {"node"},
    ("requested", "started"): {"node"},
    ("requested", "failed"): {"node", "scheduler"},
    ("requested", "aborted"): {"owner", "admin", "scheduler"},
    ("deployed", "delayed"): {"node"},
    ("deployed", "started"): {"node"},
    ("deployed", "restarted"): {"node"},
    ("deployed", "stopped"): {"node"},
    ("deployed", "finished"): {"node"},
    ("deployed", "failed"): {"node", "scheduler"},
    ("deployed", "aborted"): {"owner", "admin", "scheduler"},
    ("delayed", "deployed"): {"node"},
    ("delayed", "started"): {"node"},
    ("delayed", "finished"): {"node"},
    ("delayed", "failed"): {"node", "scheduler"},
    ("delayed", "aborted"): {"owner", "admin", "scheduler"},
    ("started", "restarted"): {"node"},
    ("started", "deployed"): {"node"},  # stopped on request (geni_stop), may run again
    ("restarted", "deployed"): {"node"},
    ("started", "stopped"): {"node"},
    ("started", "finished"): {"node"},
    ("started", "failed"): {"node", "scheduler"},
    ("started", "aborted"): {"owner", "admin", "scheduler"},
    ("restarted", "stopped"): {"node"},
    ("restarted", "finished"): {"node"},
    ("restarted", "failed"): {"node", "scheduler"},
    ("restarted", "aborted"): {"owner", "admin", "scheduler"},
}

# A node repeating an active status it may report is harmless (no change).
NODE_REPEATS = {"deployed", "delayed", "started", "restarted"}


@pytest.mark.parametrize(
    "current,new,actor",
    list(itertools.product(states.ALL_STATES, states.ALL_STATES, list(Actor))),
)
def test_everyPair(current: str, new: str, actor: Actor) -> None:
    """
    Each cell of the table: allowed ones change the status, repeats by the node
    are no-ops, everything else is refused with a reason; final states are sticky.
    """
    allowed = actor.value in EXPECTED_ALLOWED.get((current, new), set())
    if allowed:
        assert states.checkTransition(current, new, actor) is True
    elif current == new and actor is Actor.NODE and new in NODE_REPEATS:
        assert states.checkTransition(current, new, actor) is False
    else:
        with pytest.raises(TransitionRefused) as info:
            states.checkTransition(current, new, actor)
        if states.isFinal(current):
            assert info.value.message == f"Status {current} cannot be reset."
            assert info.value.extra["status"] == current


def test_tableMatchesExpectation() -> None:
    """
    The table has exactly the documented transitions, no more.
    """
    assert {k: {a.value for a in v} for k, v in states.TRANSITIONS.items()} == EXPECTED_ALLOWED


def test_unknownCode() -> None:
    """
    A code outside the vocabulary is refused by name.
    """
    with pytest.raises(TransitionRefused, match=r"Unknown status code \(running\)"):
        states.checkTransition("started", "running", Actor.NODE)


def test_splitStatus() -> None:
    """
    The legacy C{code; reason} form splits on the first semicolon.
    """
    assert states.splitStatus(" failed; container exited; oops ") == ("failed", "container exited; oops")
    assert states.splitStatus("started") == ("started", "")


def test_finalStates() -> None:
    """
    Exactly the five final states are final.
    """
    assert [s for s in states.ALL_STATES if states.isFinal(s)] == [
        "stopped", "finished", "failed", "canceled", "aborted"
    ]
