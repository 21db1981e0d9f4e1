# -*- test-case-name: tests.test_node_phases -*-
"""
The life of a task on the node as one table: C{(phase, step) -> phase}, the
shape of an Automat machine (C{state.upon(input).to(other)}) kept as data so
that the phase stays a plain string in the saved state (L{node.state}).

The agent never assigns a phase itself; it asks L{advance}, which refuses a
step the table does not have (a bug, logged by the agent's step runner).
"""

from __future__ import annotations

from enum import Enum

from node.state import DEPLOYED, DONE, NEW, RUNNING, STARTING, STOPPING


class Step(str, Enum):
    """
    What happens to a task.
    """

    DEPLOYED = "deployed"  # the deploy hook succeeded
    GAVE_UP = "gave up"  # not deployable (window closed, no image, deploy hook failed) or stopped on request until its end
    START = "start"  # start time reached: the start hook is launched
    STARTED = "started"  # the start hook succeeded
    STOP = "stop"  # stop time reached, task ended by itself, failure, or the controller ended it
    STOPPED = "stopped"  # the stop hook is done: final status queued
    REBOOTED = "rebooted"  # the agent restarted while the task was starting or running
    STOPPED_ON_REQUEST = "stopped on request"  # stop hook done for a stop request: deployed afresh before a start


class PhaseError(Exception):
    """
    A step the table does not allow from the task's phase.
    """


TABLE: dict[tuple[str, Step], str] = {
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
    # The controller ending a task being stopped re-aims the stop (aborted).
    (STOPPING, Step.STOP): STOPPING,
    (STOPPING, Step.STOPPED): DONE,
    (STOPPING, Step.STOPPED_ON_REQUEST): NEW,
}


def advance(phase: str, step: Step) -> str:
    """
    The phase after C{step}.

    @raise PhaseError: when the table has no such step from C{phase}.
    """
    try:
        return TABLE[(phase, step)]
    except KeyError:
        raise PhaseError(f"a task in phase {phase!r} cannot take step {step.value!r}") from None
