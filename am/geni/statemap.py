# -*- test-case-name: tests.test_geni_xmlrpc,tests.test_geni_api -*-
"""
The one table mapping schedule statuses to GENI allocation and operational states.
"""

from __future__ import annotations

from typing import Optional

from am.core import states

UNALLOCATED = "geni_unallocated"
ALLOCATED = "geni_allocated"
PROVISIONED = "geni_provisioned"

PENDING = "geni_pending_allocation"
NOTREADY = "geni_notready"
CONFIGURING = "geni_configuring"
STOPPING = "geni_stopping"
READY = "geni_ready"
FAILED = "geni_failed"

# status -> (geni_allocation_status, geni_operational_status)
STATUS_MAP: dict[str, tuple[str, str]] = {
    states.ALLOCATED: (ALLOCATED, PENDING),
    states.QUEUED: (ALLOCATED, PENDING),  # low-priority queue (REST only): waiting for a window
    states.DEFINED: (PROVISIONED, NOTREADY),  # waiting for its node to fetch it
    states.REQUESTED: (PROVISIONED, CONFIGURING),  # the node has it
    states.DEPLOYED: (PROVISIONED, CONFIGURING),  # image deployed, start time not reached
    states.DELAYED: (PROVISIONED, CONFIGURING),  # deployment retried
    states.STARTED: (PROVISIONED, READY),
    states.RESTARTED: (PROVISIONED, READY),
    states.STOPPED: (PROVISIONED, NOTREADY),
    states.FINISHED: (PROVISIONED, NOTREADY),
    states.FAILED: (PROVISIONED, FAILED),
    states.CANCELED: (UNALLOCATED, NOTREADY),
    states.ABORTED: (UNALLOCATED, NOTREADY),
}

assert set(STATUS_MAP) == set(states.ALL_STATES)


def geniStates(status: str, runState: Optional[str] = None) -> tuple[str, str]:
    """
    The GENI allocation and operational state of a schedule status, and of
    its C{run_state} deployment option (C{stopped} after C{geni_stop}: the
    task is stopping while its node still reports it running, then not
    ready until a C{geni_start}).
    """
    allocation, operational = STATUS_MAP[status]
    if runState == "stopped" and allocation == PROVISIONED and not states.isFinal(status):
        return allocation, STOPPING if status in (states.STARTED, states.RESTARTED) else NOTREADY
    return allocation, operational
