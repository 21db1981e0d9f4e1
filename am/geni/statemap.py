# -*- test-case-name: tests.test_geni_xmlrpc,tests.test_geni_api -*-
"""
The one table mapping schedule statuses to GENI allocation and operational states.
"""

from __future__ import annotations

from am.core import states

UNALLOCATED = "geni_unallocated"
ALLOCATED = "geni_allocated"
PROVISIONED = "geni_provisioned"

PENDING = "geni_pending_allocation"
NOTREADY = "geni_notready"
CONFIGURING = "geni_configuring"
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


def geniStates(status: str) -> tuple[str, str]:
    """
    The GENI allocation and operational state of a schedule status.
    """
    return STATUS_MAP[status]
