# -*- test-case-name: tests.test_node_controller -*-
"""
The controller's wire contract as the agent sees it: status codes, the shape
of a task in a heartbeat reply, and what an answer to a status report means.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from node.client import ControllerResponse
from node.config import SAFE_ID

STATUS_CODES = frozenset(
    {
        "defined", "requested", "deployed", "delayed", "started", "restarted",
        "stopped", "finished", "failed", "canceled", "aborted",
    }
)
FINAL = frozenset({"stopped", "finished", "failed", "canceled", "aborted"})

# What became of a status report: taken; refused for good; refused because the
# controller already holds a final status for the task (nothing left to report);
# to be sent again.
DELIVERED, DROPPED, SETTLED, RETRY = "delivered", "dropped", "settled", "retry"

#: The machine-readable C{code} of the controller's refusal to change a final
#: status (the REST face's C{StatusRefused} answer, C{schemas/openapi.json}).
REFUSED_FINAL = "final"


def statusCode(status: str) -> str:
    """
    The code of a status string: the part before the first C{;}.
    """
    return status.split(";", 1)[0].strip()


@attrs.frozen
class TaskInfo:
    """
    One task as the heartbeat reply describes it.
    """

    id: str
    expid: int
    start: float
    stop: float
    status: str
    options: dict[str, Any]


def _number(raw: dict[str, Any], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} is {value!r}, not a number")
    return float(value)


def parseTask(raw: Any) -> TaskInfo:
    """
    Check one task of a heartbeat reply.

    @raise ValueError: saying what is wrong with it.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"task is {type(raw).__name__}, not an object")
    schedid = raw.get("id")
    if isinstance(schedid, int) and not isinstance(schedid, bool):
        schedid = str(schedid)
    if not isinstance(schedid, str) or not SAFE_ID.match(schedid):
        raise ValueError(f"task id {schedid!r} is not a valid schedule id")
    start, stop = _number(raw, "start"), _number(raw, "stop")
    if stop <= start:
        raise ValueError(f"task {schedid}: stop {stop:g} is not after start {start:g}")
    status = raw.get("status", "defined")
    if not isinstance(status, str) or statusCode(status) not in STATUS_CODES:
        raise ValueError(f"task {schedid}: unknown status {status!r}")
    options = raw.get("deployment_options") or {}
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            raise ValueError(f"task {schedid}: deployment_options is not JSON") from None
    if not isinstance(options, dict):
        raise ValueError(f"task {schedid}: deployment_options is not an object")
    return TaskInfo(schedid, int(_number(raw, "expid")), start, stop, status, options)


def finalRefusal(response: ControllerResponse) -> bool:
    """
    Whether an answer refuses a report because the task's status is final:
    by its C{code} (L{REFUSED_FINAL}), or, from a controller that sends no
    code (the legacy server), by its message "Status X cannot be reset.".
    """
    body = response.body
    if isinstance(body, dict) and "code" in body:
        return body["code"] == REFUSED_FINAL
    return "cannot be reset" in response.text


def classifyReply(response: ControllerResponse) -> str:
    """
    What to do with a status report after this answer: L{DELIVERED},
    L{SETTLED} (the task's status is already final there), L{DROPPED} (the
    controller will never take it) or L{RETRY}.
    """
    code = response.code
    if 200 <= code < 300:
        return DELIVERED
    if code == 409 and finalRefusal(response):
        return SETTLED
    if code in (401, 408, 429) or code >= 500 or code < 200 or 300 <= code < 400:
        return RETRY
    return DROPPED
