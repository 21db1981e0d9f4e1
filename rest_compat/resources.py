# -*- test-case-name: tests.test_rest_resources -*-
"""
C{/resources}: nodes, their schedules, and the admin's node settings
(legacy reference §3.2 rows 7-17). The node heartbeat on C{PUT} is in
L{rest_compat.nodes}.
"""

from __future__ import annotations

from typing import Any, Optional

from am import accounts, states
from am.errors import BadRequest, Forbidden, NotFound
from am.model import Node, User
from rest_compat import access, nodes, render
from rest_compat.context import Context, HTTPError, Reply
from rest_compat.experiments import visibleSchedules
from rest_compat.params import text
from rest_compat.schedules import ownerOf


def _node(txn: Any, nodeid: str) -> Node:
    node = txn.getNode(nodeid.strip())
    if node is None:
        raise NotFound("Node id does not exist.")
    return node


def _nodeSchedules(txn: Any, user: Optional[User], node: Node, now: int, horizon: int) -> list[dict[str, Any]]:
    """
    A node's schedules in C{[now, now + horizon)}, options only for those
    who may see them; nodes never see GENI allocations not yet provisioned.
    """
    owners: dict[int, int] = {}
    rows = []
    for s in txn.schedulesOfNode(node.id, now, now + horizon):
        if s.status == states.ALLOCATED and access.nodeScope(user) is not None:
            continue
        ownerid = ownerOf(txn, owners, s.expid)
        rows.append(render.schedule(s, access.mayReadOptions(user, ownerid, s.nodeid)))
    return rows


async def listResources(ctx: Context) -> Reply:
    """
    C{GET /resources}: every node (a node sees only itself). Unlike the legacy
    server, nodes without interfaces are listed too.
    """
    scope = access.nodeScope(ctx.user)

    def query(txn: Any) -> list[dict[str, Any]]:
        found = txn.listNodes()
        if scope is not None:
            found = [n for n in found if n.id == scope]
        return [render.node(n) for n in found]

    return Reply(200, await ctx.scheduler.read(query))


async def getResource(ctx: Context) -> Reply:
    """
    C{GET /resources/<id>}: a list holding that node (legacy shape); 404 for
    an unknown id (legacy: 200 C{[]}).
    """
    nodeid = ctx.args[0]
    access.checkNode(ctx.user, nodeid.strip())
    node = await ctx.scheduler.read(_node, nodeid)
    return Reply(200, [render.node(node)])


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

    def query(txn: Any) -> dict[str, Any]:
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


def _setNode(txn: Any, nodeid: str, tags: Optional[str], status: Optional[str]) -> Node:
    node = None
    if tags is not None:
        node = accounts.setNodeTags(txn, nodeid, tags)
    if status is not None:
        node = accounts.setNodeStatus(txn, nodeid, status)
    return node


async def putResource(ctx: Context) -> Reply:
    """
    C{PUT /resources/<id>}: a node's heartbeat, or an admin setting the node's
    tags (C{type=tag:value,...}) and/or status (C{status=active|maintenance|
    disabled|missing}), atomically.
    """
    if ctx.caller.role == access.NODE:
        return await nodes.heartbeat(ctx)
    params = ctx.params
    if params.get("pair") is not None:
        raise HTTPError(501, "Node pairs are not supported by this scheduler.", parameter="pair")
    if params.get("quota") is not None:
        raise HTTPError(501, "Interface (SIM) quotas are not kept by this scheduler.", parameter="quota")
    tags, status = text(params, "type"), text(params, "status")
    if tags is None and status is None:
        raise BadRequest("Parameters missing (any of: type, status).", missing=["type", "status"])
    await ctx.scheduler.transact(_setNode, ctx.args[0].strip(), tags, status)
    done = [what for what, value in (("type", tags), ("status", status)) if value is not None]
    return Reply(200, render.message(f"Node {' and '.join(done)} set."))
