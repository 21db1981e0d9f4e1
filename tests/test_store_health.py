"""
The health records a store keeps between transactions (L{am.store.healthcache}),
on both stores: kept while nothing changes, equal to what the table holds,
another connection's writes seen at the next read, rolled-back writes never
kept; and L{am.core.health.penalties} the same from them as from a dict.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from am.core import health
from am.core.health import HealthRecords
from am.core.model import Node, NodeHealth
from am.core.policy import Policy
from tests.core_helpers import NOW
from tests.storefixtures import Backend, postgres, store  # noqa: F401 (fixtures)

POLICY = Policy(maintenance=())


def _fresh(txn: Any) -> dict[str, NodeHealth]:
    """
    The table as it is, read past the kept records.
    """
    rows = txn._all("SELECT nodeid, gaps, last_gap, failures, last_failure FROM node_health")
    return {r[0]: NodeHealth(*r) for r in rows}


def _put(*records: NodeHealth) -> Any:
    return lambda txn: [txn.putHealth(r) for r in records]


def test_keptWhileUnchanged(store: Backend) -> None:
    """
    The records are read once and kept (the same read-only mapping) until a
    health write commits; they always equal the table.
    """
    store.run(_put(NodeHealth("1", gaps=1, lastGap=NOW), NodeHealth("2", failures=2, lastFailure=NOW - 5)))
    first = store.run(lambda txn: txn.listHealth())
    assert first == store.run(_fresh) and set(first) == {"1", "2"}
    assert store.run(lambda txn: txn.listHealth()) is first
    with pytest.raises(TypeError):
        first["3"] = NodeHealth("3")  # type: ignore[index]
    store.run(_put(NodeHealth("3", gaps=4, lastGap=NOW)))
    again = store.run(lambda txn: txn.listHealth())
    assert again is not first and again == store.run(_fresh) and again["3"].gaps == 4


def test_otherConnectionSeen(store: Backend) -> None:
    """
    Another connection's health write (another controller, another worker
    process on the SQLite file) is seen at the next read; so is a node deleted.
    """
    other = store.open()
    store.run(lambda txn: txn.putNode(Node(id="1")))
    store.run(_put(NodeHealth("1", gaps=1, lastGap=NOW)))
    assert store.run(lambda txn: txn.listHealth()) == {"1": NodeHealth("1", gaps=1, lastGap=NOW)}
    other.run(_put(NodeHealth("1", gaps=2, lastGap=NOW + 1), NodeHealth("2", failures=1, lastFailure=NOW)))
    assert store.run(lambda txn: txn.listHealth()) == other.run(_fresh)
    assert store.run(lambda txn: txn.listHealth())["1"].gaps == 2
    other.run(lambda txn: txn.deleteNode("1"))
    assert list(store.run(lambda txn: txn.listHealth())) == ["2"]


def test_rolledBackNeverKept(store: Backend) -> None:
    """
    A transaction sees its own health writes; when it rolls back they are
    not kept, even when another connection then commits the same version
    number with other records.
    """
    other = store.open()
    store.run(_put(NodeHealth("1", gaps=1, lastGap=NOW)))
    before = store.run(lambda txn: txn.listHealth())

    def failing(txn: Any) -> None:
        txn.putHealth(NodeHealth("9", gaps=9, lastGap=NOW))
        assert txn.listHealth()["9"].gaps == 9
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.run(failing)
    assert store.run(lambda txn: txn.listHealth()) == before == store.run(_fresh)
    with pytest.raises(RuntimeError):
        store.run(failing)
    other.run(_put(NodeHealth("5", failures=5, lastFailure=NOW)))
    kept = store.run(lambda txn: txn.listHealth())
    assert kept == other.run(_fresh) and "9" not in kept and kept["5"].failures == 5


def test_writeThenReadInOneBatch(store: Backend) -> None:
    """
    Transactions committed together: one that reads after another's health
    write sees it, and what is kept afterwards is the committed table.
    """
    outcomes = store.db.runBatch([
        (_put(NodeHealth("1", gaps=1, lastGap=NOW)), (), {}),
        (lambda txn: dict(txn.listHealth()), (), {}),
    ])
    assert [ok for ok, _ in outcomes] == [True, True]
    assert outcomes[1][1] == {"1": NodeHealth("1", gaps=1, lastGap=NOW)}
    assert store.run(lambda txn: txn.listHealth()) == store.run(_fresh)


def test_penaltiesFromRecords() -> None:
    """
    The penalties of kept records (only those inside the window read) are
    those of the same records as a dict, at any time.
    """
    rng = random.Random(11)
    window = POLICY.healWindow
    records = [
        NodeHealth(str(i), rng.randrange(4), NOW - rng.randrange(2 * window), rng.randrange(4),
                   NOW - rng.randrange(2 * window))
        for i in range(300)
    ]
    kept = HealthRecords(records)
    plain = {r.nodeid: r for r in records}
    assert kept == plain and len(kept) == 300
    for now in (NOW, NOW - window, NOW + window // 2, NOW + 3 * window):
        plainPenalties, keptPenalties = (health.penalties(records, now, POLICY) for records in (plain, kept))
        assert {k: v for k, v in keptPenalties.items() if v} == {k: v for k, v in plainPenalties.items() if v}
        assert len(keptPenalties) <= len(plainPenalties)
    assert HealthRecords().since(0) == []
