# -*- test-case-name: tests.test_rest_experiments -*-
"""
The legacy C{POST /experiments} parameters (legacy reference §4.1, §4.2)
mapped onto the core's L{am.core.requests.AllocationRequest}.

Differences from the legacy server, on purpose: C{start}/C{stop} may be form
strings (the legacy server failed with 500), C{taskname} is accepted for
C{name}, C{nodes} may be a list, C{shared="0"} is false, and C{interfaceCount}
is read as a number (the legacy server took the form string C{"1"} for pairs).
"""

from __future__ import annotations

from typing import Any, Mapping

from am.core.requests import AllocationRequest
from am.core.errors import Conflict
from rest_compat.params import flag, intParam, nodeList, parseOptions, requireParams, text

REQUIRED = ("name", "nodecount", "script")
OPTIONAL = ("nodetypes", "start", "stop", "duration", "options", "interfaceCount", "dryrun")

# Options the scheduler consumes; storage and traffic also reach the node,
# whose deploy hook sizes the results disk and accounts traffic with them.
_SCHEDULING_ONLY = ("shared", "nodes", "recurrence", "period", "until", "dryrun")
# Legacy let one hard-coded certificate change node-side directories.
_REFUSED = ("internal", "basedir")


def interfaceCount(params: Mapping[str, Any]) -> int:
    """
    Legacy C{interfaceCount}: 1 (default) single or tail nodes, 2 single or head
    nodes, 3 or more node pairs. A form string is read as its number (the
    legacy server took any string for "more than any number", i.e. pairs).
    """
    return intParam(params, "interfaceCount", 1)


def requestFrom(params: Mapping[str, Any], ownerid: int) -> AllocationRequest:
    """
    Build the core's request from legacy parameters.

    @raise am.core.errors.BadRequest: a missing or ill-typed parameter (named).
    @raise am.core.errors.Conflict: an option or mode this scheduler refuses.
    """
    params = dict(params)
    if params.get("name") is None and params.get("taskname") is not None:
        params["name"] = params["taskname"]
    requireParams(params, REQUIRED, OPTIONAL)
    options = parseOptions(params.get("options"))
    for key in _REFUSED:
        if key in options:
            raise Conflict(f"option {key} not allowed")
    start = intParam(params, "start", 0)
    stop = intParam(params, "stop", None)
    duration = intParam(params, "duration", None)
    if duration is None:
        duration = stop - start if stop is not None else 0
    storage = intParam(options, "storage", 0, minimum=0)
    traffic = intParam(options, "traffic", 0, minimum=0)
    dryrun = params.get("dryrun") if params.get("dryrun") is not None else options.get("dryrun")
    recurrence = options.get("recurrence")
    if recurrence is not None and not isinstance(recurrence, str):
        recurrence = str(recurrence).lower()
    deployment = {k: v for k, v in options.items() if k not in _SCHEDULING_ONLY}
    if "storage" in options:
        deployment["storage"] = storage
    if "traffic" in options:
        deployment["traffic"] = traffic
    return AllocationRequest(
        ownerid=ownerid,
        name=text(params, "name") or "",
        script=text(params, "script") or "",
        nodecount=params["nodecount"],
        duration=duration,
        start=start,
        nodetypes=text(params, "nodetypes", "") or "",
        nodes=nodeList(options.get("nodes")),
        shared=flag("shared", options.get("shared")),
        recurrence=recurrence or None,
        period=options.get("period"),
        until=options.get("until"),
        storage=storage,
        traffic=traffic,
        options=deployment,
        dryrun=flag("dryrun", dryrun),
        interfaceCount=interfaceCount(params),
    )
