# -*- test-case-name: tests.test_rest_resources -*-
"""
The legacy JSON shapes of nodes, users, schedules, tasks, experiments and
journals (legacy reference §3.3), built from core model objects, and the
legacy encoding: sorted keys, two-space indentation.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable, Mapping, Optional

from am.core.model import Booked, Experiment, JournalEntry, Node, Quota, Schedule, User

_NODE_KEYS = ("id", "hostname", "status", "heartbeat", "interfaces", "pair")


def encode(body: Any) -> bytes:
    """
    JSON as the legacy server printed it. Plain bodies (dicts with string
    keys, lists, strings, integers, floats, booleans, None) take a fast path
    with the same bytes: C{json}'s indenting encoder is pure Python and
    generator-based, several times slower; anything else goes to C{json}.
    """
    try:
        return (_plain(body, "\n") + "\n").encode("ascii")
    except (_NotPlain, TypeError, RecursionError):  # TypeError: keys that do not sort
        return (json.dumps(body, sort_keys=True, indent=2) + "\n").encode("utf-8")


class _NotPlain(Exception):
    """
    The body holds something only C{json} itself encodes as it wants.
    """


_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_WORDS = {None: "null", True: "true", False: "false"}


def _plain(value: Any, newline: str) -> str:
    """
    C{json.dumps(value, sort_keys=True, indent=2)} at the indentation
    C{newline} (a newline and the enclosing level's spaces), or L{_NotPlain}.
    """
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int:
        return int.__repr__(value)
    if kind is dict:
        if not value:
            return "{}"
        inner = newline + "  "
        parts = []
        for key in sorted(value):
            if type(key) is not str:
                raise _NotPlain()
            item = value[key]
            # Strings and integers inline: most values are, and a call costs.
            itemKind = type(item)
            if itemKind is str:
                text = _quote(item)
            elif itemKind is int:
                text = int.__repr__(item)
            else:
                text = _plain(item, inner)
            parts.append(_quote(key) + ": " + text)
        return "{" + inner + ("," + inner).join(parts) + newline + "}"
    if kind is list:
        if not value:
            return "[]"
        inner = newline + "  "
        return "[" + inner + ("," + inner).join([_plain(v, inner) for v in value]) + newline + "]"
    if value is None or kind is bool:
        return _WORDS[value]
    if kind is float and value == value and value not in (_INFINITY, -_INFINITY):
        return float.__repr__(value)
    raise _NotPlain()


_INFINITY = float("inf")


def nodeId(value: str) -> Any:
    """
    Node ids are text in the core; the legacy API printed them as integers,
    so canonical decimal ids go out as numbers and anything else as text.
    """
    text = str(value)
    if text.isdigit() and text.isascii() and str(int(text)) == text:
        return int(text)
    return text


def visible(options: Mapping[str, Any]) -> dict[str, Any]:
    """
    Options without the hidden C{_} keys, which only the node itself receives.
    """
    return {k: v for k, v in options.items() if not str(k).startswith("_")}


def pairsByNode(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """
    Each paired node's C{(head, tail)} pair, from the store's list of pairs.
    """
    found: dict[str, tuple[str, str]] = {}
    for head, tail in pairs:
        found[head] = found[tail] = (head, tail)
    return found


def node(n: Node, pair: Optional[tuple[str, str]] = None) -> dict[str, Any]:
    """
    A node: scalar keys, its tags flattened (they never override the scalar
    keys), the interfaces its last heartbeat reported and, for a node in a
    pair, C{pair: {head, tail}} (so a node is the head when its own id is the
    head's).
    """
    result: dict[str, Any] = {k: v for k, v in n.tags.items() if k not in _NODE_KEYS}
    result.update(
        id=nodeId(n.id),
        hostname=n.hostname,
        status=n.status,
        heartbeat=n.heartbeat,
        interfaces=[dict(i) for i in n.interfaces if isinstance(i, dict)],
    )
    if pair is not None:
        result["pair"] = {"head": nodeId(pair[0]), "tail": nodeId(pair[1])}
    return result


def user(u: User, quotas: Mapping[str, Quota]) -> dict[str, Any]:
    """
    A user with its current quotas; invalidated users show the legacy role
    C{invalid}.
    """

    def current(kind: str) -> int:
        quota = quotas.get(kind)
        return quota.current if quota is not None else 0

    return {
        "id": u.id,
        "name": u.name,
        "ssl_id": u.fingerprint or "",
        "role": "invalid" if u.invalid else u.role,
        "project": u.project,
        "quota_time": current("time"),
        "quota_data": current("data"),
        "quota_storage": current("storage"),
    }


def schedule(s: Schedule, withOptions: bool, hidden: bool = False) -> dict[str, Any]:
    """
    The full schedule row. C{deployment_options} only when the caller may see
    them; hidden C{_} keys only for the node's own heartbeat (C{hidden}).
    """
    result: dict[str, Any] = {
        "id": str(s.id),
        "nodeid": nodeId(s.nodeid),
        "expid": s.expid,
        "start": s.start,
        "stop": s.stop,
        "status": s.statusText,
        "shared": int(bool(s.shared)),
    }
    if withOptions:
        options = dict(s.deploymentOptions)
        result["deployment_options"] = options if hidden else visible(options)
    return result


def task(s: Schedule) -> dict[str, Any]:
    """
    A task in a heartbeat reply: the full row with every option.
    """
    return schedule(s, withOptions=True, hidden=True)


def heartbeatJSON(tasks: Iterable[Schedule]) -> bytes:
    """
    The heartbeat reply C{{"interfaces": {}, "tasks": [task(t)...]}}, the
    same bytes as L{encode} of it, written straight from the schedules (each
    task's keys in their sorted order) instead of building the dicts and
    walking them again: every node asks this every minute. Options only
    C{json} encodes (a float that is not finite, say) take L{encode}'s path.
    """
    tasks = list(tasks)
    inner = "\n      "
    parts = []
    try:
        for s in tasks:
            parts.append(
                "{" + inner + '"deployment_options": ' + _plain(dict(s.deploymentOptions), inner)
                + "," + inner + '"expid": ' + _plain(s.expid, inner)
                + "," + inner + '"id": ' + _quote(str(s.id))
                + "," + inner + '"nodeid": ' + _plain(nodeId(s.nodeid), inner)
                + "," + inner + '"shared": ' + ("1" if s.shared else "0")
                + "," + inner + '"start": ' + _plain(s.start, inner)
                + "," + inner + '"status": ' + _quote(s.statusText)
                + "," + inner + '"stop": ' + _plain(s.stop, inner)
                + "\n    }"
            )
    except (_NotPlain, TypeError, RecursionError):
        return encode({"interfaces": {}, "tasks": [task(t) for t in tasks]})
    if not parts:
        return b'{\n  "interfaces": {},\n  "tasks": []\n}\n'
    return ('{\n  "interfaces": {},\n  "tasks": [\n    ' + ",\n    ".join(parts) + "\n  ]\n}\n").encode("ascii")


def compactJSON(found: Iterable[Booked]) -> bytes:
    """
    The C{GET /schedules} calendar entries C{{nodeid, ownerid, start, stop}},
    encoded straight from the rows: the same bytes as L{encode} of the dicts
    (a decimal node id as a number, see L{nodeId}), at a fraction of the cost.
    """
    parts = []
    for _, nodeid, start, stop, ownerid in found:
        if not (nodeid.isdigit() and nodeid.isascii() and (nodeid[0] != "0" or nodeid == "0")):
            nodeid = _quote(nodeid)
        parts.append(
            f'{{\n    "nodeid": {nodeid},\n    "ownerid": {ownerid},\n'
            f'    "start": {start},\n    "stop": {stop}\n  }}'
        )
    if not parts:
        return b"[]\n"
    return ("[\n  " + ",\n  ".join(parts) + "\n]\n").encode("ascii")


def experiment(
    e: Experiment, schedules: Iterable[Schedule], listSchedules: bool = False
) -> dict[str, Any]:
    """
    An experiment with a C{summary} of status counts, or with its C{schedules}
    as C{{id: {nodeid, status, start, stop}}}.
    """
    result: dict[str, Any] = {
        "id": e.id,
        "name": e.name,
        "ownerid": e.ownerid,
        "type": e.nodetypes,
        "script": e.script,
        "start": e.start,
        "stop": e.stop,
        "status": e.status,
        "options": visible(e.options),
    }
    if listSchedules:
        result["schedules"] = {
            str(s.id): {"nodeid": nodeId(s.nodeid), "status": s.statusText, "start": s.start, "stop": s.stop}
            for s in schedules
        }
    else:
        result["summary"] = dict(Counter(s.statusText for s in schedules))
    return result


def journal(entry: JournalEntry) -> dict[str, Any]:
    """
    One quota journal row.
    """
    return {
        "ownerid": entry.userid,
        "quota": entry.kind,
        "delta": entry.delta,
        "new_value": entry.newValue,
        "reason": entry.reason,
        "timestamp": entry.timestamp,
    }


def message(text: str, **extra: Any) -> dict[str, Any]:
    """
    The legacy C{{"message": ...}} body with extra keys merged at top level.
    """
    body = dict(extra)
    body["message"] = text
    return body


def plannedSchedule(s: Schedule) -> dict[str, Any]:
    """
    A schedule a dry run would book (it has no id yet).
    """
    return {
        "nodeid": nodeId(s.nodeid),
        "start": s.start,
        "stop": s.stop,
        "shared": int(bool(s.shared)),
        "deployment_options": visible(s.deploymentOptions),
    }

