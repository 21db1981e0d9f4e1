# -*- test-case-name: tests.test_rest_resources -*-
"""
C{/resources}: nodes, their schedules, and the admin's node settings
(legacy reference §3.2 rows 7-17). The node heartbeat on C{PUT} is in
L{rest_compat.nodes}.
"""

from __future__ import annotations

from typing import Any, Optional

from am.core import nodefilter
from am.core.errors import BadRequest, Forbidden, NotFound
from am.core.model import Node, User
from am.core.interfaces import IStoreTransaction
from rest_compat import access, nodes, render
from rest_compat.context import Context, HTTPError, Reply
from rest_compat.experiments import visibleSchedules
from rest_compat.params import text
from rest_compat.schedules import ownerOf


def _node(txn: IStoreTransaction, nodeid: str) -> Node:
    node = txn.getNode(nodeid.strip())
    if node is None:
        raise NotFound("Node id does not exist.")
    return node


def _nodeSchedules(txn: IStoreTransaction, user: Optional[User], node: Node, now: int, horizon: int) -> list[dict[str, Any]]:
    """
    A node's schedules in C{[now, now + horizon)}, options only for those
    who may see them; nodes never see GENI allocations not yet provisioned.
    """
    owners: dict[int, int] = {}
    rows = []
    for s in txn.schedulesOfNode(node.id, now, now + horizon):
        if access.hiddenFromNodes(s) and access.nodeScope(user) is not None:
            continue
        ownerid = ownerOf(txn, owners, s.expid)
        rows.append(render.schedule(s, access.mayReadOptions(user, ownerid, s.nodeid)))
    return rows


async def listResources(ctx: Context) -> Reply:
    """
    C{GET /resources[?nodetypes=FILTER]}: every node (a node sees only
    itself), or those matching the filter grammar. Unlike the legacy server,
    nodes without interfaces are listed too.
    """
    scope = access.nodeScope(ctx.user)
    expression = text(ctx.params, "nodetypes", "") or ""
    try:
        nodeFilter = nodefilter.parse(expression) if expression.strip() else None
    except nodefilter.FilterSyntaxError as e:
        raise BadRequest(str(e), parameter="nodetypes") from None

    def query(txn: IStoreTransaction) -> list[dict[str, Any]]:
        found = txn.listNodes()
        if scope is not None:
            found = [n for n in found if n.id == scope]
        if nodeFilter is not None:
            found = [n for n in found if nodeFilter.matches(n.tags)]
        pairs = render.pairsByNode(txn.listPairs())
        return [render.node(n, pairs.get(n.id)) for n in found]

    return Reply(200, await ctx.scheduler.read(query))


async def getResource(ctx: Context) -> Reply:
    """
    C{GET /resources/<id>}: a list holding that node (legacy shape); 404 for
    an unknown id (legacy: 200 C{[]}).
    """
    nodeid = ctx.args[0]
    access.checkNode(ctx.user, nodeid.strip())

    def query(txn: IStoreTransaction) -> dict[str, Any]:
        node = _node(txn, nodeid)
        return render.node(node, render.pairsByNode(txn.listPairs()).get(node.id))

    return Reply(200, [await ctx.scheduler.read(query)])


async def resourceSchedules(ctx: Context) -> Reply:
    """
    C{GET /resources/<id>/schedules}: full rows up to the horizon.
    """
    nodeid, user = ctx.args[0], ctx.user
    access.checkNode(user, nodeid.strip())
    now, horizon = ctx.now(), ctx.scheduler.policy.horizon
    rows = await ctx.scheduler.read(lambda txn: _nodeSchedules(txn, user, _node(txn, nodeid), now, horizon))
    return Reply(200, rows)


async def resourceAll(ctx: Context) -> Reply:
    """
    C{GET /resources/<id>/all}: C{{"schedules": [...], "experiments": [...]}}
    (legacy: always 500); experiments the caller may not read are left out.
    """
    nodeid, user = ctx.args[0], ctx.user
    access.checkNode(user, nodeid.strip())
    now, horizon = ctx.now(), ctx.scheduler.policy.horizon

    def query(txn: IStoreTransaction) -> dict[str, Any]:
        node = _node(txn, nodeid)
        schedules = _nodeSchedules(txn, user, node, now, horizon)
        experiments = []
        for expid in sorted({row["expid"] for row in schedules}):
            experiment = txn.getExperiment(expid)
            try:
                experiments.append(render.experiment(experiment, visibleSchedules(txn, user, experiment)))
            except Forbidden:
                continue
        return {"schedules": schedules, "experiments": experiments}

    return Reply(200, await ctx.scheduler.read(query))


async def resourceJournals(ctx: Context) -> Reply:
    """
    C{GET /resources/<id>/journals[/<iccid>]}: interface (SIM) quota journals.
    Interface quotas are not kept, so the list is always empty.
    """
    nodeid = ctx.args[0]
    access.checkNode(ctx.user, nodeid.strip())
    await ctx.scheduler.read(_node, nodeid)
    return Reply(200, [])


# C{pair=delete} removes the node's pair (legacy).
PAIR_DELETE = "delete"


async def putResource(ctx: Context) -> Reply:
    """
    C{PUT /resources/<id>}: a node's heartbeat, or an admin setting the node's
    tags (C{type=tag:value,...}), status (C{status=active|maintenance|
    disabled|missing}) and/or pair (C{pair=<tail id>} makes this node the head,
    replacing the pairs of both nodes; C{pair=delete} removes its pair),
    atomically.
    """
    if ctx.caller.role == access.NODE:
        return await nodes.heartbeat(ctx)
    params = ctx.params
    if params.get("quota") is not None:
        raise HTTPError(501, "Interface (SIM) quotas are not kept by this scheduler.", parameter="quota")
    tags, status, pair = text(params, "type"), text(params, "status"), text(params, "pair")
    if tags is None and status is None and pair is None:
        raise BadRequest("Parameters missing (any of: type, status, pair).", missing=["type", "status", "pair"])
    deleted = pair is not None and pair.strip().lower() == PAIR_DELETE
    await ctx.scheduler.setNode(
        ctx.args[0].strip(), tags=tags, status=status, pair=None if deleted else pair, unpair=deleted
    )
    done = [
        what for what, value in (("type", tags), ("status", status), ("pair", None if deleted else pair))
        if value is not None
    ]
    if not deleted:
        summary = f"Node {' and '.join(done)} set."
    else:
        summary = f"Node {' and '.join(done)} set, pair deleted." if done else "Node pair deleted."
    return Reply(200, render.message(summary))
