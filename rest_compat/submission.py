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
from am.core.errors import BadRequest, Conflict
from rest_compat.params import flag, intParam, nodeList, parseOptions, requireParams, text

REQUIRED = ("name", "nodecount", "nodetypes", "script")
OPTIONAL = ("start", "stop", "duration", "options", "interfaceCount", "dryrun")
# Also understood at top level: taskname (the legacy README's name for name).
KNOWN = frozenset(REQUIRED + OPTIONAL + ("taskname",))

# Options the scheduler consumes; storage and traffic also reach the node,
# whose deploy hook sizes the results disk and accounts traffic with them.
_SCHEDULING_ONLY = ("shared", "nodes", "recurrence", "period", "until", "dryrun", "notify", "heal")
# Legacy let one hard-coded certificate change node-side directories.
_REFUSED = ("internal", "basedir")


def interfaceCount(params: Mapping[str, Any]) -> int:
    """
    Legacy C{interfaceCount}: 1 (default) single or tail nodes, 2 single or head
    nodes, 3 or more node pairs. A form string is read as its number (the
    legacy server took any string for "more than any number", i.e. pairs).
    """
    return intParam(params, "interfaceCount", 1)


def unknownParameters(params: Mapping[str, Any]) -> list[str]:
    """
    Top-level parameters this route does not know, sorted. They are accepted
    (old scripts send them) but reported, e.g. C{nodes} given outside C{options}.
    """
    return sorted(key for key in params if key not in KNOWN)


def warnings(params: Mapping[str, Any]) -> list[str]:
    """
    What the reply says about parameters it ignored.
    """
    found = []
    for key in unknownParameters(params):
        hint = f" (did you mean options.{key}?)" if key in ("nodes", "shared", "recurrence", "period", "until",
                                                        "storage", "traffic", "ssh") else ""
        found.append(f"Unknown parameter {key} ignored{hint}.")
    return found


def requestFrom(params: Mapping[str, Any], ownerid: int) -> AllocationRequest:
    """
    Build the core's request from legacy parameters.

    @raise am.core.errors.BadRequest: a missing or ill-typed parameter (named).
    @raise am.core.errors.Conflict: an option or mode this scheduler refuses.
    """
    params = dict(params)
    if params.get("name") is None and params.get("taskname") is not None:
        params["name"] = params["taskname"]
    options = parseOptions(params.get("options"))
    nodes = nodeList(options.get("nodes"))
    # nodetypes may be left out only when options.nodes names the nodes (legacy);
    # an explicit empty nodetypes means any eligible node.
    requireParams(params, REQUIRED if nodes is None else tuple(r for r in REQUIRED if r != "nodetypes"), OPTIONAL)
    for key in _REFUSED:
        if key in options:
            raise Conflict(f"option {key} not allowed")
    start = intParam(params, "start", 0)
    stop = intParam(params, "stop", None)
    duration = intParam(params, "duration", None)
    if duration is None:
        duration = stop - start if stop is not None else 0
    elif stop and start > 0 and stop - start != duration:
        raise BadRequest(
            f"stop and duration disagree: stop - start is {stop - start} s, duration is {duration} s; "
            "give one of them.",
            parameter="stop",
            parameters=["stop", "duration"],
        )
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
        nodes=nodes,
        shared=flag("shared", options.get("shared")),
        recurrence=recurrence or None,
        period=options.get("period"),
        until=options.get("until"),
        storage=storage,
        traffic=traffic,
        options=deployment,
        dryrun=flag("dryrun", dryrun),
        interfaceCount=interfaceCount(params),
        heal=flag("heal", options.get("heal")),
        notify=options.get("notify"),
    )
