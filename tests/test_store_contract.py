"""
One contract for every store: each test runs against the SQLite database (a
temporary file) and the PostgreSQL database (a schema of its own in a database
made for this module), through C{db.run(...)} and L{IStoreTransaction} only.

The stores come from L{tests.storefixtures} (PostgreSQL from
C{MARVIN_TEST_POSTGRES}; the tests fail, never skip, when it is not there).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from zope.interface.verify import verifyObject

from am.core import accounts, allocation
from am.core.allocation import AllocationRequest
from am.core.errors import Conflict
from am.core.interfaces import IStoreTransaction
from am.core.model import Booked, Experiment, FeedRow, JournalEntry, Node, Notification, Quota, ResultFile, Schedule, User
from am.core.policy import Policy
from am.testing import demoNodes
from tests.core_helpers import NOW, assertNoOverlap
from tests.storefixtures import Backend, both, postgres, store  # noqa: F401 (fixtures)

POLICY = Policy(maintenance=())


def _owner(txn: Any, name: str = "o", fingerprint: str = "0" * 40) -> int:
    return txn.addUser(User(name=name, role="user", fingerprint=fingerprint))


def _experiment(txn: Any, owner: int, **fields: Any) -> int:
    return txn.addExperiment(Experiment(name=fields.pop("name", "e"), ownerid=owner, script="img", **fields))


# -- nodes -------------------------------------------------------------------------


def test_transactionProvidesInterface(store: Backend) -> None:
    verifyObject(IStoreTransaction, store.run(lambda txn: txn))
    assert isinstance(store.run(lambda txn: txn.schemaVersion), int)


def test_nodesRoundTrip(store: Backend) -> None:
    """
    Nodes keep both tag sets, interfaces and fields; they are listed in byte
    order of their ids and rewritten whole by putNode.
    """
    interfaces = [{"iccid": "8946", "operator": "Telia", "quality": {"rssi": -70, "ok": True}}]
    node = Node(id="b", hostname="host-b", status="maintenance", heartbeat=NOW,
                adminTags={"zone": "lab", "project": "x"}, inventoryTags={"type": "testing", "model": "apu2d"},
                interfaces=interfaces)
    store.run(lambda txn: [txn.putNode(n) for n in (node, Node(id="a"), Node(id="10"), Node(id="2"), Node(id="B"))])
    assert store.run(lambda txn: txn.getNode("b")) == node
    assert store.run(lambda txn: txn.getNode("b")).tags == {"type": "testing", "model": "apu2d", "zone": "lab",
                                                           "project": "x"}
    assert [n.id for n in store.run(lambda txn: txn.listNodes())] == ["10", "2", "B", "a", "b"]
    assert store.run(lambda txn: txn.getNode("nope")) is None

    changed = Node(id="b", hostname="h2", inventoryTags={"type": "deployed"})
    store.run(lambda txn: txn.putNode(changed))
    assert store.run(lambda txn: txn.getNode("b")) == changed
    assert store.run(lambda txn: [n for n in txn.listNodes() if n.id == "b"]) == [changed]


def test_heartbeat(store: Backend) -> None:
    """
    A heartbeat always sets its time; status and interfaces only when given.
    """
    store.run(lambda txn: txn.putNode(Node(id="1", interfaces=[{"a": 1}])))
    store.run(lambda txn: txn.setHeartbeat("1", NOW, None, None))
    node = store.run(lambda txn: txn.getNode("1"))
    assert (node.heartbeat, node.status, node.interfaces) == (NOW, "active", [{"a": 1}])
    store.run(lambda txn: txn.setHeartbeat(1, NOW + 5, "maintenance", [{"b": 2}]))
    node = store.run(lambda txn: txn.getNode("1"))
    assert (node.heartbeat, node.status, node.interfaces) == (NOW + 5, "maintenance", [{"b": 2}])


def test_deleteNode(store: Backend) -> None:
    def fill(txn):
        for node in demoNodes(2):
            txn.putNode(node)
        txn.addSchedules([Schedule(expid=_experiment(txn, _owner(txn)), nodeid="1", start=0, stop=10)])

    store.run(fill)
    assert store.run(lambda txn: (txn.nodeHasSchedules("1"), txn.nodeHasSchedules("2"))) == (True, False)
    store.run(lambda txn: txn.deleteNode("2"))
    assert [n.id for n in store.run(lambda txn: txn.listNodes())] == ["1"]
    assert store.run(lambda txn: txn.getNode("2")) is None


# -- users, quotas, journal -----------------------------------------------------------


def test_users(store: Backend) -> None:
    """
    Ids are given on insert; users are found by fingerprint, URN or by name and
    project among valid users; fingerprint and URN are unique.
    """
    urn = "urn:publicid:IDN+example.org+user+alice"
    alice = User(name="alice", role="user", fingerprint="a" * 40, project="p1")
    bob = User(name="bob", role="user", urn=urn)
    node = User(name="Node 7", role="node", fingerprint="c" * 40, nodeid="7")
    ids = store.run(lambda txn: [txn.addUser(u) for u in (alice, bob, node)])
    assert ids == [alice.id, bob.id, node.id] and ids == sorted(ids) and len(set(ids)) == 3
    assert store.run(lambda txn: txn.getUser(bob.id)) == bob
    assert store.run(lambda txn: txn.getUser(10**6)) is None
    assert store.run(lambda txn: txn.findUser(fingerprint="a" * 40)) == alice
    assert store.run(lambda txn: txn.findUser(urn=urn)) == bob
    assert store.run(lambda txn: txn.findUser(name="alice", project="p1")) == alice
    assert store.run(lambda txn: txn.findUser(name="alice")) is None
    assert store.run(lambda txn: txn.findUser(name="bob")) == bob
    assert store.run(lambda txn: txn.findUser()) is None
    assert store.run(lambda txn: txn.listUsers()) == [alice, bob, node]

    alice.invalid, alice.urn = True, urn + "2"
    store.run(lambda txn: txn.updateUser(alice))
    assert store.run(lambda txn: txn.getUser(alice.id)) == alice
    assert store.run(lambda txn: txn.findUser(name="alice", project="p1")) is None

    for duplicate in (User(name="x", role="user", fingerprint="a" * 40), User(name="y", role="user", urn=urn)):
        with pytest.raises(Exception):
            store.run(lambda txn: txn.addUser(duplicate))
    assert [u.name for u in store.run(lambda txn: txn.listUsers())] == ["alice", "bob", "Node 7"]


def test_quotasAndJournal(store: Backend) -> None:
    owner = store.run(_owner)
    store.run(lambda txn: [txn.putQuota(owner, Quota(k, 10, 20, NOW)) for k in ("time", "data", "storage")])
    store.run(lambda txn: txn.putQuota(owner, Quota("time", 5, 30, NOW + 1, NOW)))
    quotas = store.run(lambda txn: txn.getQuotas(owner))
    assert list(quotas) == ["data", "storage", "time"]
    assert quotas["time"] == Quota("time", 5, 30, NOW + 1, NOW)
    assert store.run(lambda txn: txn.getQuotas(owner + 1)) == {}
    entries = [JournalEntry(NOW + i, owner, "time", -i, 10 - i, f"r{i}") for i in (3, 1, 2)]
    store.run(lambda txn: [txn.addJournal(e) for e in entries])
    assert store.run(lambda txn: txn.listJournal(owner)) == entries
    assert store.run(lambda txn: txn.listJournal(owner + 1)) == []


# -- experiments ----------------------------------------------------------------------


def test_experiments(store: Backend) -> None:
    """
    Experiments round-trip with their JSON options (key order too) and are
    found by any combination of owner, status and slice, in id order.
    """
    def fill(txn):
        a, b = _owner(txn, "a", "a" * 40), _owner(txn, "b", "b" * 40)
        made = [
            Experiment(name="one", ownerid=a, script="img", nodetypes="type:testing", start=NOW, stop=NOW + 60,
                       options={"z": 1, "a": {"nested": [1, "x", None]}, "m": "é"}, recurringUntil=NOW + 600,
                       created=NOW, sliceURN="urn:publicid:IDN+x+slice+s"),
            Experiment(name="two", ownerid=b, script="img", status="archived"),
            Experiment(name="three", ownerid=a, script="img", sliceURN="urn:publicid:IDN+x+slice+s"),
        ]
        for e in made:
            txn.addExperiment(e)
        return a, b, made

    a, b, made = store.run(fill)
    one = store.run(lambda txn: txn.getExperiment(made[0].id))
    assert one == made[0] and list(one.options) == ["z", "a", "m"]
    assert store.run(lambda txn: txn.getExperiment(made[-1].id + 1)) is None

    def names(**keys):
        return [e.name for e in store.run(lambda txn: txn.findExperiments(**keys))]

    assert names() == ["one", "two", "three"]
    assert names(ownerid=a) == ["one", "three"]
    assert names(status="archived") == ["two"]
    assert names(sliceURN="urn:publicid:IDN+x+slice+s") == ["one", "three"]
    assert names(ownerid=a, status="active", sliceURN="urn:publicid:IDN+x+slice+s") == ["one", "three"]
    assert names(ownerid=b, status="active") == []

    one.status, one.options, one.stop = "archived", {"k": [2]}, NOW + 120
    store.run(lambda txn: txn.updateExperiment(one))
    assert store.run(lambda txn: txn.getExperiment(one.id)) == one


# -- schedules ------------------------------------------------------------------------


def _schedules(store: Backend) -> tuple[int, int, list[Schedule]]:
    """
    Nodes 1 to 3, two owners and a set of schedules: exclusive, shared, final,
    allocated, and one long window starting well before the others.
    """
    def fill(txn):
        for node in demoNodes(3, NOW):
            txn.putNode(node)
        a, b = _owner(txn, "a", "a" * 40), _owner(txn, "b", "b" * 40)
        ea, eb = _experiment(txn, a), _experiment(txn, b)
        rows = [
            Schedule(expid=ea, nodeid="1", start=1000, stop=2000, deploymentOptions={"script": "img", "b": 1, "a": 2}),
            Schedule(expid=ea, nodeid="2", start=1000, stop=2000, shared=True),
            Schedule(expid=eb, nodeid="2", start=1500, stop=2500, status="canceled", reason="by user"),
            Schedule(expid=eb, nodeid="3", start=-100000, stop=100000),
            Schedule(expid=eb, nodeid="1", start=3000, stop=4000, status="allocated", expires=900),
            Schedule(expid=ea, nodeid="2", start=3000, stop=3500, status="allocated", expires=500),
            Schedule(expid=ea, nodeid="1", start=500, stop=1000, chargedTime=500, chargedData=7, chargedStorage=9),
        ]
        ids = txn.addSchedules(rows)
        assert ids == [s.id for s in rows]
        return a, b, rows

    return store.run(fill)


def test_addBooking(store: Backend) -> None:
    """
    An experiment with its schedules (one, or several) in one call: the
    experiment's new id is returned and set on it and on its schedules, whose
    ids are set; read back as written. A schedule that cannot be stored (an
    unknown node) keeps neither.
    """
    def book(txn, nodes):
        owner = txn.findUser(name="o").id if txn.findUser(name="o") else _owner(txn)
        experiment = Experiment(name="e", ownerid=owner, script="img", start=1000, stop=2000)
        schedules = [Schedule(expid=0, nodeid=n, start=1000 + 10 * k, stop=2000, deploymentOptions={"k": k})
                     for k, n in enumerate(nodes)]
        expid = txn.addBooking(experiment, schedules)
        return expid, experiment, schedules

    store.run(lambda txn: [txn.putNode(Node(id=str(n))) for n in (1, 2, 3)])
    for nodes in (["1"], ["2", "3"]):
        expid, experiment, schedules = store.run(book, nodes)
        assert expid == experiment.id and store.run(lambda txn: txn.getExperiment(expid)).name == "e"
        assert [s.expid for s in schedules] == [expid] * len(nodes) and all(s.id for s in schedules)
        assert store.run(lambda txn: txn.schedulesOfExperiment(expid)) == schedules
    before = store.run(lambda txn: txn.findExperiments())
    with pytest.raises(Exception):
        store.run(book, ["nope"])
    assert store.run(lambda txn: txn.findExperiments()) == before


def test_addAndGetSchedules(store: Backend) -> None:
    a, b, rows = _schedules(store)
    ids = [s.id for s in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [store.run(lambda txn: txn.getSchedule(i)) for i in ids] == rows
    assert store.run(lambda txn: txn.getSchedule(ids[-1] + 1)) is None
    assert store.run(lambda txn: txn.countSchedules()) == 7
    # Shared: node 3 is booked then (PostgreSQL's constraint refuses an overlap).
    one = store.run(lambda txn: txn.addSchedules([Schedule(expid=rows[0].expid, nodeid="3", start=9, stop=10, shared=True)]))
    assert one[0] > ids[-1] and store.run(lambda txn: txn.addSchedules([])) == []
    expa = rows[0].expid
    assert [s.id for s in store.run(lambda txn: txn.schedulesOfExperiment(expa))] == [
        one[0], rows[6].id, rows[0].id, rows[1].id, rows[5].id]
    assert store.run(lambda txn: txn.schedulesOfExperiment(expa + 100)) == []

    changed = rows[0]
    changed.status, changed.reason, changed.shared = "started", "ok", True
    changed.start, changed.stop, changed.deploymentOptions = 1100, 2100, {"x": [1]}
    changed.chargedTime, changed.expires, changed.updated = 3, 4, NOW
    store.run(lambda txn: txn.updateSchedule(changed))
    assert store.run(lambda txn: txn.getSchedule(changed.id)) == changed


def _positions(store: Backend, rows: list[Schedule], function: str) -> Callable[..., list[int]]:
    """
    A query of the store by method name, answering the positions in C{rows}
    of the schedules it returns, in its order.
    """
    ids = {s.id: i for i, s in enumerate(rows)}

    def of(*args: Any, **kwargs: Any) -> list[int]:
        return [ids[s.id] for s in store.run(lambda txn: getattr(txn, function)(*args, **kwargs))]

    return of


def test_schedulesOfNodeAndOverlapping(store: Backend) -> None:
    """
    Overlap is with [start, stop); a long window from before the span is found.
    """
    a, b, rows = _schedules(store)
    ofNode, overlapping = _positions(store, rows, "schedulesOfNode"), _positions(store, rows, "schedulesOverlapping")
    assert ofNode("1", 0, 10000) == [6, 0, 4]
    assert ofNode(1, 1000, 3000) == [0]
    assert ofNode("1", 999, 3001, limit=2) == [6, 0]
    assert ofNode("3", 50000, 50001) == [3]
    assert ofNode("2", 2000, 2500) == [2]
    assert overlapping(1000, 1600) == [3, 0, 1, 2]
    assert overlapping(1000, 1600, ownerid=a) == [0, 1]
    assert overlapping(1000, 1600, ownerid=b) == [3, 2]
    assert overlapping(4000, 5000, ownerid=a) == []


def test_bookedIn(store: Backend) -> None:
    """
    The calendar rows: placed schedules overlapping the span with their
    owners, in start then id order, by node, without statuses, and in pages
    after a C{(start, id)} cursor.
    """
    a, b, rows = _schedules(store)
    of = _positions(store, rows, "bookedIn")
    found = store.run(lambda txn: txn.bookedIn(1000, 1600))
    assert [r.id for r in found] == [rows[i].id for i in (3, 0, 1, 2)]
    assert found[1] == Booked(rows[0].id, "1", 1000, 2000, a)
    assert [r.ownerid for r in found] == [b, a, a, b]
    assert of(0, 10000, nodeid="1") == [6, 0, 4]
    assert of(0, 10000, nodeid="1", withoutStatus=("allocated",)) == [6, 0]
    assert of(0, 10000, withoutStatus=("allocated", "canceled")) == [3, 6, 0, 1]
    assert of(0, 10000, limit=2) == [3, 6]
    assert of(0, 10000, after=(rows[6].start, rows[6].id), limit=3) == [0, 1, 2]
    assert of(0, 10000, after=(rows[0].start, rows[0].id)) == [1, 2, 4, 5]
    assert of(0, 10000, after=(1000, 0)) == [0, 1, 2, 4, 5]
    assert of(0, 10000, after=(10**6, 0)) == []
    assert of(4000, 5000) == [3]


def test_feedRows(store: Backend) -> None:
    """
    The calendar feeds' rows: placed schedules overlapping the span, by node,
    owner or experiment, with the experiment's name and owner's name.
    """
    a, b, rows = _schedules(store)
    of = _positions(store, rows, "feedRows")
    found = store.run(lambda txn: txn.feedRows(1000, 1600))
    assert [r.id for r in found] == [rows[i].id for i in (3, 0, 1, 2)]
    canceled = rows[2]
    assert found[3] == FeedRow(canceled.id, "2", canceled.expid, 1500, 2500, "canceled", "by user",
                               canceled.updated, b, "e", "b")
    assert of(0, 10000, nodeid="1") == [6, 0, 4]
    assert of(0, 10000, ownerid=a) == [6, 0, 1, 5]
    assert of(0, 10000, expid=rows[3].expid) == [3, 2, 4]
    assert of(0, 10000, ownerid="x") == of(0, 10000, expid=2**70) == []


def test_blockingIntervals(store: Backend) -> None:
    """
    Only exclusive, non-final schedules block; node ids restrict; a window that
    started long before the span is found; the order is that of SQLite.
    """
    _schedules(store)

    def intervals(*args):
        return [(i.nodeid, i.start, i.stop) for i in store.run(lambda txn: txn.blockingIntervals(*args))]

    assert intervals(1000, 2000) == [("3", -100000, 100000), ("1", 1000, 2000)]
    assert intervals(0, 5000) == [("3", -100000, 100000), ("1", 500, 1000), ("1", 1000, 2000),
                                  ("1", 3000, 4000), ("2", 3000, 3500)]
    assert intervals(0, 5000, ["2", "1"]) == [("1", 500, 1000), ("1", 1000, 2000), ("1", 3000, 4000),
                                              ("2", 3000, 3500)]
    assert intervals(99999, 200000, ["3"]) == [("3", -100000, 100000)]
    assert intervals(100000, 200000, ["3"]) == []
    assert intervals(1000, 2000, []) == []
    assert intervals(2000, 3000, [1, 2]) == []
    many = [str(i) for i in range(100)]
    assert intervals(0, 5000, many) == intervals(0, 5000)
    rows = store.run(lambda txn: txn.schedulesOfNode("2", 1000, 1001))
    rows[0].shared = False
    store.run(lambda txn: txn.updateSchedule(rows[0]))
    assert intervals(1000, 1001, ["2"]) == [("2", 1000, 2000)]
    # a window made longer than any before is still found from its far end
    rows[0].start, rows[0].stop = 4000, 10**6  # clear of node 2's other window
    store.run(lambda txn: txn.updateSchedule(rows[0]))
    assert intervals(999999, 10**7) == intervals(999999, 10**7, ["2"]) == [("2", 4000, 10**6)]
    assert [s.id for s in store.run(lambda txn: txn.schedulesOverlapping(999999, 10**7))] == [rows[0].id]


def test_expiredAllocations(store: Backend) -> None:
    _, _, rows = _schedules(store)
    assert [s.id for s in store.run(lambda txn: txn.expiredAllocations(901))] == [rows[5].id, rows[4].id]
    assert [s.id for s in store.run(lambda txn: txn.expiredAllocations(900))] == [rows[5].id]
    assert store.run(lambda txn: txn.expiredAllocations(500)) == []


def test_trafficAndPublicKeys(store: Backend) -> None:
    _, _, rows = _schedules(store)
    first, final = rows[0].id, rows[2].id
    store.run(lambda txn: [txn.putTraffic(first, m, v) for m, v in (("rx", 1), ("tx", 2), ("B", 3), ("rx", 10))])
    assert list(store.run(lambda txn: txn.trafficOf(first)).items()) == [("B", 3), ("rx", 10), ("tx", 2)]
    assert store.run(lambda txn: txn.trafficOf(final)) == {}
    store.run(lambda txn: [txn.addPublicKey(s, f"ssh-ed25519 K{s}", NOW + 10) for s in (rows[3].id, first, final)])
    store.run(lambda txn: txn.addPublicKey(rows[4].id, "ssh-ed25519 old", NOW))
    assert store.run(lambda txn: txn.publicKeys(NOW)) == [f"ssh-ed25519 K{first}", f"ssh-ed25519 K{rows[3].id}"]
    assert store.run(lambda txn: txn.publicKeys(NOW + 10)) == []


def test_outboxAndSecrets(store: Backend) -> None:
    """
    Notifications are numbered per experiment, round-trip (body as JSON),
    come back due in order without leased rows, and update; secrets replace.
    """
    owner = store.run(lambda txn: _owner(txn))
    first = store.run(lambda txn: _experiment(txn, owner))
    second = store.run(lambda txn: _experiment(txn, owner))

    def note(expid: int, eventid: str, due: int) -> Notification:
        return Notification(expid=expid, ownerid=owner, url="https://h.example/x", kind="schedule.status",
                            body={"kind": "schedule.status", "new": "deployed", "ids": [1, 2]},
                            created=NOW, eventid=eventid, due=due)

    made = [note(first, "a", NOW), note(second, "b", NOW - 5), note(first, "c", NOW + 50)]
    store.run(lambda txn: [txn.addNotification(n) for n in made])
    assert [(n.expid, n.seq) for n in made] == [(first, 1), (second, 1), (first, 2)]
    assert all(n.id is not None for n in made)
    assert [n.eventid for n in store.run(lambda txn: txn.dueNotifications(NOW, 10))] == ["b", "a"]
    assert store.run(lambda txn: txn.nextNotificationDue()) == NOW - 5
    leased = made[1]
    leased.leaseOwner, leased.leaseUntil, leased.attempts = "w", NOW + 30, 1
    store.run(lambda txn: txn.updateNotification(leased))
    assert [n.eventid for n in store.run(lambda txn: txn.leasedNotifications("w"))] == ["b"]
    assert store.run(lambda txn: txn.leasedNotifications("other")) == []
    assert [n.eventid for n in store.run(lambda txn: txn.dueNotifications(NOW, 10))] == ["a"]
    assert [n.eventid for n in store.run(lambda txn: txn.dueNotifications(NOW + 60, 1))] == ["b"]
    again = store.run(lambda txn: txn.getNotification(leased.id))
    assert again == leased
    assert [n.eventid for n in store.run(lambda txn: txn.notificationsOf(first))] == ["a", "c"]
    assert store.run(lambda txn: txn.getNotifySecret(owner)) is None
    store.run(lambda txn: txn.putNotifySecret(owner, "one", NOW))
    store.run(lambda txn: txn.putNotifySecret(owner, "two", NOW + 1))
    assert store.run(lambda txn: txn.getNotifySecret(owner)) == "two"


def test_pruneNotifications(store: Backend) -> None:
    """
    Pruning deletes rows in the given states whose event is before the cut,
    oldest first and at most C{limit}, never an experiment's newest row, so
    the next row is numbered after it.
    """
    owner = store.run(lambda txn: _owner(txn))
    first = store.run(lambda txn: _experiment(txn, owner))
    second = store.run(lambda txn: _experiment(txn, owner))

    def note(expid: int, eventid: str, created: int, state: str) -> Notification:
        return Notification(expid=expid, ownerid=owner, url="https://h.example/x", kind="schedule.status",
                            body={}, created=created, eventid=eventid, due=created, state=state)

    made = [
        note(first, "a", NOW - 30, "delivered"), note(first, "b", NOW - 20, "pending"),
        note(second, "c", NOW - 20, "failed"), note(first, "d", NOW - 10, "failed"),
        note(first, "e", NOW, "delivered"), note(second, "f", NOW - 5, "delivered"),
        note(first, "g", NOW - 5, "delivered"),
    ]
    store.run(lambda txn: [txn.addNotification(n) for n in made])
    settled = ("delivered", "failed")
    assert store.run(lambda txn: txn.pruneNotifications(settled, NOW - 10, 10)) == 2
    assert [n.eventid for n in store.run(lambda txn: txn.notificationsOf(first))] == ["b", "d", "e", "g"]
    assert [n.eventid for n in store.run(lambda txn: txn.notificationsOf(second))] == ["f"]
    assert store.run(lambda txn: txn.pruneNotifications(("failed",), NOW + 100, 10)) == 1
    assert store.run(lambda txn: txn.pruneNotifications(settled, NOW + 100, 1)) == 1
    assert [n.eventid for n in store.run(lambda txn: txn.notificationsOf(first))] == ["b", "g"]
    assert store.run(lambda txn: txn.pruneNotifications(settled, NOW + 100, 10)) == 0
    # "f" and "g" are their experiments' newest: both survive; numbering continues.
    assert [n.eventid for n in store.run(lambda txn: txn.notificationsOf(second))] == ["f"]
    later = note(second, "h", NOW + 1, "pending")
    store.run(lambda txn: txn.addNotification(later))
    assert later.seq == 3


def test_resultFilesAndWindows(store: Backend) -> None:
    _, _, rows = _schedules(store)
    a, b = rows[0].id, rows[1].id
    files = [ResultFile(a, "z/b", 5, "1" * 64, NOW), ResultFile(a, "a", 7, "2" * 64, NOW + 5), ResultFile(b, "a", 1, "3" * 64, NOW - 5)]
    store.run(lambda txn: [txn.putResultFile(f) for f in files])
    store.run(lambda txn: txn.putResultFile(ResultFile(a, "a", 8, "4" * 64, NOW + 6)))
    assert store.run(lambda txn: txn.resultFiles(a)) == [ResultFile(a, "a", 8, "4" * 64, NOW + 6), files[0]]
    assert store.run(lambda txn: txn.staleResultFiles(NOW + 1, 10)) == [files[2], files[0]]
    assert store.run(lambda txn: txn.staleResultFiles(NOW + 1, 1)) == [files[2]]
    store.run(lambda txn: txn.deleteResultFile(b, "a"))
    assert store.run(lambda txn: txn.resultFiles(b)) == []
    assert store.run(lambda txn: txn.resultWindow(a)) is None
    store.run(lambda txn: (txn.openResultWindow(a, NOW + 10), txn.openResultWindow(b, NOW), txn.openResultWindow(a, NOW + 20)))
    assert store.run(lambda txn: txn.resultWindow(a)) == NOW + 20
    assert store.run(lambda txn: txn.closedResultWindows(NOW)) == [b]
    assert store.run(lambda txn: txn.closedResultWindows(NOW + 20)) == [b, a]
    store.run(lambda txn: txn.closeResultWindow(b))
    assert store.run(lambda txn: txn.closedResultWindows(NOW + 99)) == [a]


# -- transactions ---------------------------------------------------------------------


def test_rollbackLeavesStoreUsable(store: Backend) -> None:
    """
    Any error undoes the whole transaction, database errors included, and the
    next transaction works.
    """
    store.run(lambda txn: txn.putNode(Node(id="1")))

    def half(txn):
        txn.putNode(Node(id="new"))
        txn.setHeartbeat("1", NOW, None, None)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.run(half)

    def violates(txn):
        txn.putNode(Node(id="new"))
        txn.deleteNode("nope")
        txn.addSchedules([Schedule(expid=12345, nodeid="1", start=0, stop=1)])

    with pytest.raises(Exception):
        store.run(violates)
    assert [n.id for n in store.run(lambda txn: txn.listNodes())] == ["1"]
    assert store.run(lambda txn: txn.getNode("1")).heartbeat == 0
    store.run(lambda txn: txn.putNode(Node(id="new")))
    assert [n.id for n in store.run(lambda txn: txn.listNodes())] == ["1", "new"]


def _everything(txn: Any) -> dict[str, Any]:
    users = txn.listUsers()
    experiments = txn.findExperiments()
    return {
        "nodes": txn.listNodes(),
        "users": users,
        "quotas": [list(txn.getQuotas(u.id).items()) for u in users],
        "journal": [txn.listJournal(u.id) for u in users],
        "experiments": experiments,
        "schedules": [txn.schedulesOfExperiment(e.id) for e in experiments],
        "blocking": txn.blockingIntervals(-2**62, 2**62),
        "count": txn.countSchedules(),
        "keys": txn.publicKeys(0),
        "traffic": [txn.trafficOf(s.id) for s in txn.schedulesOverlapping(-2**62, 2**62)],
    }


def test_reopenRestoresEverything(store: Backend) -> None:
    def book(txn):
        owner = accounts.addUser(txn, "alice", "user", NOW, POLICY, fingerprint="d" * 40).id
        booked = allocation.allocate(txn, AllocationRequest(
            ownerid=owner, name="e", script="img", nodecount=2, duration=600, start=NOW + 1000,
            options={"k": 1}), NOW, POLICY)
        txn.putTraffic(booked.schedules[0].id, "rx", 5)
        txn.addPublicKey(booked.schedules[0].id, "ssh-ed25519 AAA", NOW + 5000)
        txn.addJournal(JournalEntry(NOW, owner, "data", 1, 2, "x"))

    _schedules(store)
    store.run(book)
    before = store.run(_everything)
    assert before["count"] == 9 and before["keys"] == ["ssh-ed25519 AAA"]
    assert store.reopen().run(_everything) == before


# -- the core's allocation on both stores ---------------------------------------------


def _allocations(backend: Backend) -> list[Any]:
    """
    A run of bookings and refusals; returns what each one gave, ids included.
    """
    def setup(txn):
        for node in demoNodes(4, NOW):
            txn.putNode(node)
        txn.putNode(Node(id="5", heartbeat=NOW, inventoryTags={"type": "deployed"}))
        return [accounts.addUser(txn, n, "user", NOW, POLICY, fingerprint=n * 40).id for n in ("a", "b")]

    alice, bob = backend.run(setup)
    requests = [
        dict(ownerid=alice, nodecount=2, duration=600, start=NOW + 1000),
        dict(ownerid=bob, nodecount=3, duration=600, start=NOW + 1000),
        dict(ownerid=bob, nodecount=2, duration=600, start=NOW + 1000),
        dict(ownerid=bob, nodecount=1, duration=600, start=0, nodes=["1"]),
        dict(ownerid=alice, nodecount=4, duration=3600, start=0, nodetypes="type:testing"),
        dict(ownerid=alice, nodecount=1, duration=600, start=NOW + 7200, recurrence="simple", period=3600,
             until=NOW + 7200 + 3 * 3600),
        dict(ownerid=bob, nodecount=1, duration=600, start=NOW + 7200, nodes=["1", "2", "3", "4"], shared=True),
        dict(ownerid=bob, nodecount=6, duration=600, start=0),
    ]
    outcomes: list[Any] = []
    for fields in requests:
        request = AllocationRequest(name="x", script="docker.io/x/y", **fields)
        try:
            booked = backend.run(allocation.allocate, request, NOW, POLICY)
        except Conflict as e:
            outcomes.append(("conflict", e.message, e.extra))
        else:
            outcomes.append(("booked", booked.experiment, booked.schedules, booked.charged))
    outcomes.append(backend.run(lambda txn: txn.blockingIntervals(0, 2**62)))
    outcomes.append(backend.run(lambda txn: [txn.getQuotas(u) for u in (alice, bob)]))
    return outcomes


def test_allocationBooksAndRefuses(store: Backend) -> None:
    outcomes = _allocations(store)
    assert [o[0] for o in outcomes[:-2]] == ["booked", "booked", "conflict", "booked", "booked", "booked",
                                             "booked", "conflict"]
    assert outcomes[2][2]["suggestions"], outcomes[2]
    assertNoOverlap([(i.nodeid, i.start, i.stop) for i in outcomes[-2]], POLICY.padding)


def test_allocationIdenticalOnBothStores(both: tuple[Backend, Backend]) -> None:
    """
    The same requests give the same bookings, refusals, suggestions, ids and
    quotas on SQLite and on PostgreSQL.
    """
    sqlite, postgres = both
    assert _allocations(sqlite) == _allocations(postgres)
    assert sqlite.run(_everything) == postgres.run(_everything)
