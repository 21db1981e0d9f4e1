# -*- test-case-name: tests.test_slots,tests.test_door -*-
"""
What the faces hand the core to book, and what a booking returns: plain
values, so a face can build a request without importing the rules.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from am.core.model import Experiment, Schedule


@attrs.define
class AllocationRequest:
    """
    What both faces ask the core to book; values already of the right Python types
    where the face could decide them, raw otherwise (validated here).
    """

    ownerid: int
    name: str
    script: str
    nodecount: Any = 1
    duration: Any = 0
    start: Any = 0
    nodetypes: str = ""
    nodes: Optional[list[str]] = None
    shared: bool = False
    recurrence: Optional[str] = None
    period: Any = None
    until: Any = None
    storage: Any = 0
    traffic: Any = 0
    options: dict[str, Any] = attrs.field(factory=dict)
    sliceURN: Optional[str] = None
    allocateOnly: bool = False
    dryrun: bool = False
    interfaceCount: Any = 1
    heal: bool = False
    notify: Optional[str] = None


@attrs.define
class Allocation:
    """
    The result of a booking (or of a dry run, whose ids are C{None}).

    @ivar nodecount: the nodes booked per interval, or the node pairs when
        C{paired} (the legacy reply counts pairs).
    @ivar charged: what the booking charges per quota (C{time}, C{data}, C{storage}).
    @ivar remaining: what each quota holds after the charge (the cost preview).
    @ivar resets: when each quota is next reset (UNIX seconds).
    """

    experiment: Experiment
    schedules: list[Schedule]
    intervals: int
    nodecount: int
    charged: dict[str, int]
    paired: bool = False
    remaining: dict[str, int] = attrs.field(factory=dict)
    resets: dict[str, int] = attrs.field(factory=dict)
