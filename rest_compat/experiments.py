# -*- test-case-name: tests.test_rest_experiments -*-
"""
C{/experiments}: listing, reading, booking (with dry runs), deleting and
merging experiments (legacy reference §3.2 rows 26-32, §4).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.logger import Logger

from am.core.errors import BadRequest, Conflict, NotFound
from am.core.values import lookup
from am.core.model import Experiment, Schedule, User
from am.core.interfaces import IStoreTransaction
from am.core import states
from rest_compat import access, render, waiting
from rest_compat.context import Context, Reply
from rest_compat.params import flag, recordId, text
from rest_compat.submission import requestFrom, warnings

log = Logger(namespace="rest_compat")

# Far enough to cover every schedule of a node.
FOREVER = 2**62


def visibleSchedules(txn: IStoreTransaction, user: Optional[User], experiment: Experiment) -> list[Schedule]:
    """
    An experiment's schedules, checking the caller may read it; a node sees
    only its own tasks.
    """
    schedules = txn.schedulesOfExperiment(experiment.id)
    scope = access.nodeScope(user)
    if scope is not None:
        # GENI allocations not yet provisioned and queued tasks are invisible to nodes.
        schedules = [s for s in schedules if not access.hiddenFromNodes(s)]
    access.checkExperiment(user, experiment.ownerid, {s.nodeid for s in schedules})
    if scope is not None:
        schedules = [s for s in schedules if s.nodeid == scope]
    return schedules


async def listExperiments(ctx: Context) -> Reply:
    """
    C{GET /experiments[?showHidden=1]}: the caller's experiments (admins: all;
    nodes: those with tasks on them), active ones unless C{showHidden}. An
    empty list is C{[]} (the legacy server answered 404).
    """
    status = None if flag("showHidden", ctx.params.get("showHidden")) else "active"
    user = ctx.user

    def query(txn: IStoreTransaction) -> list[dict[str, Any]]:
        scope = access.nodeScope(user)
        if access.mayListAll(user):
            experiments = txn.findExperiments(status=status)
        elif scope is not None:
            ids = sorted(
                {s.expid for s in txn.schedulesOfNode(scope, 0, FOREVER) if not access.hiddenFromNodes(s)}
            )
            experiments = [e for e in (txn.getExperiment(i) for i in ids) if e is not None]
            experiments = [e for e in experiments if status is None or e.status == status]
        else:
            experiments = txn.findExperiments(ownerid=user.id, status=status)
        return [render.experiment(e, visibleSchedules(txn, user, e)) for e in experiments]

    return Reply(200, await ctx.scheduler.read(query))


async def _readExperiment(ctx: Context, listSchedules: bool, schedid: Optional[str] = None) -> Reply:
    """
    One experiment (with its schedules, or one of them), held open while a
    C{wait} condition does not hold yet (L{rest_compat.waiting}).
    """
    expid, user = recordId(ctx.args[0], "Could not find experiment with this id."), ctx.user
    wait = waiting.condition(ctx)

    def query(txn: IStoreTransaction) -> waiting.Seen:
        experiment = lookup(txn.getExperiment, expid, "Could not find experiment with this id.")
        schedules = visibleSchedules(txn, user, experiment)
        if schedid is not None:
            schedules = [s for s in schedules if str(s.id) == schedid.strip()]
            if not schedules:
                raise NotFound("Could not find schedule entry with this id.")
        archived = schedid is None and experiment.status == states.EXPERIMENT_ARCHIVED
        pairs = [(s.id, s.status) for s in schedules]
        return render.experiment(experiment, schedules, listSchedules), pairs, archived

    return await waiting.held(ctx, [("experiment", expid)], lambda: ctx.scheduler.read(query), wait)


async def getExperiment(ctx: Context) -> Reply:
    """
    C{GET /experiments/<id>}: one experiment with a status summary.
    """
    return await _readExperiment(ctx, listSchedules=False)


async def experimentSchedules(ctx: Context) -> Reply:
    """
    C{GET /experiments/<id>/schedules} (or C{/schedule}): with its schedules.
    """
    return await _readExperiment(ctx, listSchedules=True)


async def experimentSchedule(ctx: Context) -> Reply:
    """
    C{GET /experiments/<id>/schedules/<schedid>}: with that one schedule (marvind
    uses the singular form); 404 when it is not one of the experiment's.
    """
    return await _readExperiment(ctx, listSchedules=True, schedid=ctx.args[1])


async def submit(ctx: Context) -> Reply:
    """
    C{POST /experiments}: book, or with C{dryrun} say what would be booked.
    The reply's C{nodecount} counts node pairs when pairs were booked (legacy).
    Refusals are 409 C{"Could not allocate. <reason>"} with the core's extra
    keys (C{code}, C{available}, C{requested}, C{suggestions}...) at top level.
    Unknown top-level parameters are ignored, but said in C{warnings} and logged.
    """
    ignored = warnings(ctx.params)
    if ignored:
        log.warn(
            "POST /experiments by {user}: {warnings}", user=ctx.caller.name, warnings=" ".join(ignored)
        )
    extra: dict[str, Any] = {"warnings": ignored} if ignored else {}
    try:
        request = requestFrom(ctx.params, ctx.user.id)
        allocation = await ctx.scheduler.allocate(request)
    except Conflict as e:
        raise Conflict(f"Could not allocate. {e.message}", **e.extra) from None
    except BadRequest as e:
        refusal = dict(e.extra)
        refusal.setdefault("code", "sc2")
        raise BadRequest(e.message, **refusal) from None
    experiment = allocation.experiment
    if request.dryrun:
        return Reply(
            200,
            render.message(
                f"Dry run: {allocation.nodecount} {'node pair(s)' if allocation.paired else 'node(s)'} x "
                f"{allocation.intervals} interval(s) "
                "would be allocated; nothing was booked.",
                dryrun=True,
                nodecount=allocation.nodecount,
                intervals=allocation.intervals,
                start=experiment.start,
                stop=experiment.stop,
                charged=dict(allocation.charged),
                remaining=dict(allocation.remaining),
                resets=dict(allocation.resets),
                schedules=[render.plannedSchedule(s) for s in allocation.schedules],
                **extra,
            ),
        )
    return Reply(
        201,
        render.message(
            f"Allocated task {experiment.id}.",
            experiment=experiment.id,
            nodecount=allocation.nodecount,
            intervals=allocation.intervals,
            **extra,
        ),
        headers={"Location": f"/v1/experiments/{experiment.id}"},
    )


async def delete(ctx: Context) -> Reply:
    """
    C{DELETE /experiments/<id>}: cancel what has not reached a node, abort the
    rest, archive, refund; one call is enough (legacy needed two).
    """
    expid = recordId(ctx.args[0], "Could not find experiment with this id.")
    deletion = await ctx.scheduler.deleteExperiment(expid, ctx.user.id)
    if deletion.canceled or deletion.aborted:
        summary = "Ok. Canceled or aborted open scheduling entries and archived the experiment."
    else:
        summary = "Ok. Archived experiment."
    return Reply(
        200,
        render.message(summary, canceled=deletion.canceled, aborted=deletion.aborted, archived=deletion.archived),
    )


async def mergeMissing(ctx: Context) -> Reply:
    """
    C{PUT /experiments/<id>} without the second id (legacy: 500).
    """
    raise BadRequest(
        "Second experiment id missing: PUT /experiments/<into>/<from> merges <from> into <into>.",
        parameter="from",
    )


async def merge(ctx: Context) -> Reply:
    """
    C{PUT /experiments/<into>/<from>[?name=...]}: merge two own experiments.
    """
    into, source = (recordId(arg, "Could not find experiment with this id.") for arg in ctx.args)
    name = (text(ctx.params, "name") or "").strip() or None
    count, target, other = await ctx.scheduler.mergeExperiments(into, source, ctx.user.id, name)
    return Reply(200, render.message(f"Merged {count} tasks from experiment {other} into {target}"))
