# -*- test-case-name: tests.test_cli_e2e -*-
"""
The experimenter's commands: whoami, nodes, find, book, experiments, show,
watch, cancel. Each is one or two REST calls and a table (or the JSON).
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from typing import Any, Optional

from cli.filters import matches
from cli.times import formatDuration, formatSize, formatTime, parseDuration, parseWhen
from cli.tables import renderTable
from cli.watch import HeldFetch, follow

#: Seconds one held read of C{watch} may wait for a change.
WAIT = 50

__all__ = ["register"]

#: keys of a node that are not tags (GET /v1/resources flattens tags onto it)
NODE_FIELDS = ("id", "hostname", "status", "heartbeat", "interfaces", "pair")
RECURRENCES = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    def add(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(handler=handler)
        return parser

    add("whoami", whoami, "Who the server takes you for, and your quotas.")

    nodes = add("nodes", listNodes, "The testbed's nodes, optionally only those free in a window.")
    nodes.add_argument("--filter", default="", metavar="EXPR", help="tag filter, e.g. 'type:testing,country:se|country:no'")
    nodes.add_argument("--free-from", metavar="TIME", help="only nodes free from this time ...")
    nodes.add_argument("--for", dest="duration", metavar="DURATION", help="... for this long (alone: from now)")

    find = add("find", findSlots, "Free windows for a booking (nothing is booked).")
    _what(find, needScript=False)
    find.add_argument("--results", type=int, default=5, help="how many windows (1-100, default 5)")

    book = add("book", bookExperiment, "Book an experiment; a refusal shows the earliest windows that fit.")
    _what(book, needScript=True)
    book.add_argument("--name", help="experiment name (default: from the image)")
    book.add_argument("--recur", metavar="hourly|daily|weekly|DURATION", help="repeat every period ...")
    book.add_argument("--until", metavar="TIME", help="... until this time (required with --recur)")
    book.add_argument("--shared", action="store_true", help="share the nodes with other experiments")
    book.add_argument("--queue", action="store_true", help="low-priority queue: run when the node is next free")
    book.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="an option for the node (repeatable)")
    book.add_argument("--dry-run", action="store_true", help="show what would be booked, book nothing")

    experiments = add("experiments", listExperiments, "Your experiments (admins: everyone's).")
    experiments.add_argument("--all", action="store_true", help="include archived ones")

    show = add("show", showExperiment, "One experiment: its schedules per node, times and statuses.")
    show.add_argument("expid", type=int)

    watch = add("watch", watchExperiment, "Follow an experiment until every schedule is final.")
    watch.add_argument("expid", type=int)
    watch.add_argument("--interval", type=float, default=10.0, help="seconds between polls at first (default 10, at least 2)")
    watch.add_argument("--poll", action="store_true", help="poll instead of the server's held wait (for older servers)")

    cancel = add("cancel", cancelExperiment, "Cancel what has not run and abort what runs; archive the experiment.")
    cancel.add_argument("expid", type=int)


def _what(parser: argparse.ArgumentParser, needScript: bool) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--count", type=int, help="how many nodes (default 1)")
    which.add_argument("--nodes", metavar="ID,ID", help="these nodes")
    parser.add_argument("--filter", default="", metavar="EXPR", help="tag filter, e.g. 'type:testing,-country:it'")
    parser.add_argument("--pairs", action="store_true", help="head/tail node pairs (count counts nodes)")
    parser.add_argument("--start", default="now", metavar="TIME", help="earliest start (default now)")
    parser.add_argument("--duration", required=True, metavar="DURATION", help="how long, e.g. 30m")
    if needScript:
        parser.add_argument("--script", required=True, metavar="IMAGE", help="container image (a|b for pairs)")


def _when(run: Any, text: Optional[str]) -> Optional[int]:
    return None if text is None else parseWhen(text, run.now())


def _t(run: Any, epoch: Any) -> str:
    return formatTime(epoch, run.zone) if isinstance(epoch, int) else "-"


# -- who and what -------------------------------------------------------------------


def whoami(run: Any, args: argparse.Namespace) -> None:
    body = run.client.get("backend/auth")
    user = body.get("user") or {}
    rows = [
        ["name", user.get("name")], ["id", user.get("id")], ["role", user.get("role")],
        ["project", user.get("project")], ["fingerprint", body.get("fingerprint")],
        ["time quota", formatDuration(user.get("quota_time", 0))],
        ["data quota", formatSize(user.get("quota_data", 0))],
        ["storage quota", formatSize(user.get("quota_storage", 0))],
    ]
    run.emit(body, ["", ""], rows)


def _tags(node: dict[str, Any]) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(node.items()) if k not in NODE_FIELDS)


def listNodes(run: Any, args: argparse.Namespace) -> None:
    nodes = [n for n in run.client.get("resources") if matches(args.filter, n)]
    if args.free_from is not None or args.duration is not None:
        if args.duration is None:
            raise _usage("--free-from needs --for DURATION")
        start = _when(run, args.free_from) or int(run.now().timestamp())
        stop = start + parseDuration(args.duration)
        busy = {str(e["nodeid"]) for e in run.client.get("schedules", start=start, stop=stop)
                if e["start"] < stop and e["stop"] > start}
        nodes = [n for n in nodes if n.get("status") == "active" and str(n["id"]) not in busy]
    rows = []
    for n in nodes:
        pair = n.get("pair")
        rows.append([
            n["id"], n.get("hostname"), n.get("status"),
            _t(run, n["heartbeat"]) if n.get("heartbeat") else "never",
            f"{pair['head']}+{pair['tail']}" if pair else "", _tags(n),
        ])
    run.emit(nodes, ["ID", "HOSTNAME", "STATUS", "HEARTBEAT", "PAIR", "TAGS"], rows, empty="(no nodes)")


def _usage(text: str) -> Exception:
    from cli.main import UsageError

    return UsageError(text)


# -- finding and booking ------------------------------------------------------------


def _slotRows(run: Any, slots: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [_t(run, s["start"]), _t(run, s["stop"]), _t(run, s["max_stop"]),
         s["nodecount"], s["max_nodecount"]]
        for s in slots
    ]


SLOT_HEADERS = ["START", "STOP", "FREE UNTIL", "NODES", "FREE NODES"]


def _count(args: argparse.Namespace) -> int:
    if args.nodes:
        return len([n for n in args.nodes.split(",") if n.strip()])
    return 1 if args.count is None else args.count


def findSlots(run: Any, args: argparse.Namespace) -> None:
    query = {
        "nodecount": _count(args), "duration": parseDuration(args.duration),
        "start": _when(run, args.start), "nodetypes": args.filter or None,
        "nodes": args.nodes, "interfaceCount": 3 if args.pairs else None, "results": args.results,
    }
    slots = run.client.get("schedules/find", **query)
    run.emit(slots, SLOT_HEADERS, _slotRows(run, slots), empty="(no free window)")


def _defaultName(script: str) -> str:
    last = script.split("|")[0].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last.split("@")[0].split(":")[0]) or "experiment"


def _submission(run: Any, args: argparse.Namespace) -> dict[str, Any]:
    duration = parseDuration(args.duration)
    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _usage(f"--option wants KEY=VALUE, not {item!r}")
        options[key.strip()] = value
    if args.nodes:
        options["nodes"] = ",".join(n.strip() for n in args.nodes.split(",") if n.strip())
    if args.shared:
        options["shared"] = 1
    start = -1 if args.queue else (_when(run, args.start) or 0)
    if args.recur is not None:
        if args.until is None:
            raise _usage("--recur needs --until TIME")
        options["recurrence"] = "simple"
        options["period"] = RECURRENCES.get(args.recur.lower()) or parseDuration(args.recur)
        options["until"] = _when(run, args.until)
    elif args.until is not None and not args.queue:
        raise _usage("--until goes with --recur (or --queue)")
    elif args.until is not None:
        options["until"] = _when(run, args.until)
    body: dict[str, Any] = {
        "name": args.name or _defaultName(args.script), "script": args.script,
        "nodecount": _count(args), "nodetypes": args.filter, "start": start, "duration": duration,
        "options": options,
    }
    if args.pairs:
        body["interfaceCount"] = 3
    if args.dry_run:
        body["dryrun"] = True
    return body


def bookExperiment(run: Any, args: argparse.Namespace) -> None:
    from cli.client import APIError

    body = _submission(run, args)
    try:
        answer = run.client.call("POST", "experiments", body=body)
    except APIError as e:
        suggestions = e.body.get("suggestions")
        if suggestions and not run.json:
            run.out.write("Refused: " + str(e.body.get("message")) + "\nThe earliest windows where it fits:\n")
            run.out.write(_table(SLOT_HEADERS, _slotRows(run, suggestions)))
            run.out.write(f"Book one with --start \"{_isoLocal(run, suggestions[0]['start'])}\".\n")
        raise
    if args.dry_run:
        rows = [[s["nodeid"], _t(run, s["start"]), _t(run, s["stop"]), "yes" if s.get("shared") else "no"]
                for s in answer["schedules"]]
        if not run.json:
            charged = ", ".join(f"{k} {v}" for k, v in sorted(answer.get("charged", {}).items()))
            run.out.write(f"Dry run: would book {answer['nodecount']} node(s) x {answer['intervals']} interval(s); "
                          f"charged {charged or 'nothing'}.\n")
        run.emit(answer, ["NODE", "START", "STOP", "SHARED"], rows)
        return
    if run.json:
        run.dump(answer)
        return
    run.out.write(f"Experiment {answer['experiment']} booked: {answer['nodecount']} node(s) x "
                  f"{answer['intervals']} interval(s).\n")
    _showSchedules(run, run.client.get(f"experiments/{answer['experiment']}/schedules"))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    return renderTable(headers, rows)


def _isoLocal(run: Any, epoch: int) -> str:
    return datetime.fromtimestamp(epoch, run.zone).isoformat(timespec="minutes")


# -- following experiments ----------------------------------------------------------


def _summary(experiment: dict[str, Any]) -> str:
    summary = experiment.get("summary") or {}
    return ", ".join(f"{k} {v}" for k, v in sorted(summary.items()))


def listExperiments(run: Any, args: argparse.Namespace) -> None:
    found = run.client.get("experiments", showHidden=1 if args.all else None)
    rows = [
        [e["id"], e["name"], _t(run, e["start"]), _t(run, e["stop"]), e["status"], _summary(e), e["script"]]
        for e in sorted(found, key=lambda e: e["id"])
    ]
    run.emit(found, ["ID", "NAME", "START", "STOP", "STATUS", "SCHEDULES", "SCRIPT"], rows, empty="(no experiments)")


def _scheduleRows(run: Any, experiment: dict[str, Any]) -> list[list[Any]]:
    schedules = experiment.get("schedules") or {}
    ordered = sorted(schedules.items(), key=lambda kv: (kv[1]["start"], str(kv[1]["nodeid"]), int(kv[0])))
    return [[int(sid), s["nodeid"], _t(run, s["start"]), _t(run, s["stop"]), s["status"]] for sid, s in ordered]


SCHEDULE_HEADERS = ["SCHEDULE", "NODE", "START", "STOP", "STATUS"]


def _showSchedules(run: Any, experiment: dict[str, Any]) -> None:
    run.out.write(_table(SCHEDULE_HEADERS, _scheduleRows(run, experiment)))


def showExperiment(run: Any, args: argparse.Namespace) -> None:
    experiment = run.client.get(f"experiments/{args.expid}/schedules")
    if run.json:
        run.dump(experiment)
        return
    e = experiment
    run.out.write(
        f"Experiment {e['id']} {e['name']!r} ({e['status']}), owner {e['ownerid']}\n"
        f"  script:  {e['script']}\n"
        f"  filter:  {e['type'] or '(any node)'}\n"
        f"  window:  {_t(run, e['start'])} - {_t(run, e['stop'])}\n"
    )
    _showSchedules(run, e)


def watchExperiment(run: Any, args: argparse.Namespace) -> int:
    """
    One line per change: the progress bar and what changed. Exit 0 when all
    are final and none failed, 1 when some failed.
    """
    interval = max(2.0, args.interval)
    previous: dict[str, str] = {}
    last = None
    # Held reads end before the client's own timeout does.
    reads = HeldFetch(run.client.exchange, f"experiments/{args.expid}/schedules",
                      max(1, min(WAIT, int(run.client.settings.timeout) - 10)))
    held = None if args.poll else reads.held
    for snapshot in follow(reads.fetch, interval, sleep=run.sleep, held=held):
        stamp = run.now().strftime("%H:%M:%S")
        changes = {sid: status for sid, status in snapshot.statuses().items() if previous.get(sid) != status}
        if run.json:
            run.out.write(_compactJSON({"time": int(run.now().timestamp()), "final": snapshot.final,
                                        "total": len(snapshot.schedules), "changed": changes}) + "\n")
        else:
            run.out.write(f"{stamp} {snapshot.progress()}\n")
            for sid in sorted(changes, key=int):
                node = snapshot.schedules[sid]["nodeid"]
                before = previous.get(sid)
                arrow = f"{before} -> {changes[sid]}" if before else changes[sid]
                run.out.write(f"         schedule {sid} on node {node}: {arrow}\n")
        run.out.flush()
        previous, last = snapshot.statuses(), snapshot
    failed = sum(n for code, n in last.counts.items() if code == "failed") if last else 0
    if failed:
        run.err.write(f"marvin watch: {failed} of {len(last.schedules)} schedule(s) failed\n")
        return 1
    return 0


def _compactJSON(document: Any) -> str:
    return json.dumps(document, sort_keys=True)


def cancelExperiment(run: Any, args: argparse.Namespace) -> None:
    answer = run.client.call("DELETE", f"experiments/{args.expid}")
    if run.json:
        run.dump(answer)
        return
    run.out.write(f"Experiment {args.expid}: {answer['canceled']} schedule(s) canceled, {answer['aborted']} aborted"
                  f"{', archived' if answer['archived'] else ''}.\n")

