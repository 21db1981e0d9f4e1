"""
marvind's task phases: every cell of the table, and the agent following it.
"""

from __future__ import annotations

import itertools

import pytest

from node import phases
from node.phases import PhaseError, Step, advance
from node.state import DEPLOYED, DONE, NEW, PHASES, RUNNING, STARTING, STOPPING

EXPECTED = {
    (NEW, Step.DEPLOYED): DEPLOYED,
    (NEW, Step.GAVE_UP): DONE,
    (DEPLOYED, Step.START): STARTING,
    (DEPLOYED, Step.GAVE_UP): DONE,
    (DEPLOYED, Step.STOP): STOPPING,
    (STARTING, Step.STARTED): RUNNING,
    (STARTING, Step.STOP): STOPPING,
    (STARTING, Step.REBOOTED): DEPLOYED,
    (RUNNING, Step.STOP): STOPPING,
    (RUNNING, Step.REBOOTED): DEPLOYED,
    (STOPPING, Step.STOP): STOPPING,
    (STOPPING, Step.STOPPED): DONE,
    (STOPPING, Step.STOPPED_ON_REQUEST): NEW,
}


@pytest.mark.parametrize("phase,step", list(itertools.product(PHASES, list(Step))))
def test_everyCell(phase: str, step: Step) -> None:
    """
    Allowed steps lead where the table says; every other step is refused by name.
    """
    if (phase, step) in EXPECTED:
        assert advance(phase, step) == EXPECTED[(phase, step)]
    else:
        with pytest.raises(PhaseError, match=f"phase {phase!r} cannot take step {step.value!r}"):
            advance(phase, step)


def test_tableIsExpected() -> None:
    """
    The table has exactly these cells, and DONE is a dead end.
    """
    assert phases.TABLE == EXPECTED
    assert not [key for key in phases.TABLE if key[0] == DONE]
