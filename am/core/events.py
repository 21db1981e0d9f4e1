# -*- test-case-name: tests.test_events -*-
"""
The core's event stream: every committed change of state, as a plain typed
value, handed to in-process subscribers after its transaction committed.

Rules record events on the transaction they run in (L{CoreTransaction}); the
L{am.core.scheduler.Scheduler} delivers them, on the reactor thread, only once
the store has committed. A transaction that fails records nothing anyone sees.
Subscribers are called one event at a time, in commit order; an exception or a
failed Deferred from a subscriber is logged and swallowed, and a Deferred is
never waited for, so a subscriber can neither break nor slow a command. One
that has slow work to do (a webhook) queues it and returns.

Events are frozen attrs classes of ids and plain values, so metrics, webhooks
(through a persistent outbox) and a timeline can keep, compare and serialise
them (L{Event.asDict}).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Optional

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

_log = Logger()


@attrs.frozen(kw_only=True)
class Event:
    """
    Something that happened in the core.

    @ivar time: when (UNIX seconds, the scheduler's clock).
    @ivar actor: who caused it (an L{am.core.states.Actor} value: C{node},
        C{scheduler}, C{owner}, C{admin}, C{inventory}).
    @ivar reason: why, in words; may be empty.
    """

    kind: ClassVar[str] = "event"

    time: int
    actor: str
    reason: str = ""

    def asDict(self) -> dict[str, Any]:
        """
        A JSON-ready form, with the event's C{kind}.
        """
        data = attrs.asdict(self, recurse=False)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return {"kind": self.kind, **data}


@attrs.frozen(kw_only=True)
class ScheduleStatusChanged(Event):
    """
    A schedule moved along the schedule table (L{am.core.states.SCHEDULE}).
    """

    kind: ClassVar[str] = "schedule.status"

    schedid: int
    expid: int
    ownerid: int
    nodeid: str
    old: str
    new: str


@attrs.frozen(kw_only=True)
class ScheduleWindowChanged(Event):
    """
    A schedule's window moved (a renewal, or a queued task being placed).
    """

    kind: ClassVar[str] = "schedule.window"

    schedid: int
    expid: int
    nodeid: str
    start: int
    stop: int
    oldStart: int
    oldStop: int


@attrs.frozen(kw_only=True)
class ScheduleMoved(Event):
    """
    A schedule no node had yet was given another window and/or node: its
    owner moved an occurrence, or self-healing took it off a failing node
    (actor C{scheduler}).
    """

    kind: ClassVar[str] = "schedule.moved"

    schedid: int
    expid: int
    ownerid: int
    nodeid: str
    oldNodeid: str
    start: int
    stop: int
    oldStart: int
    oldStop: int


@attrs.frozen(kw_only=True)
class HealFailed(Event):
    """
    A window of a self-healing booking sits on a node that is down or
    failing and no healthy node matching its filter is free: it was not
    moved (its owner is told once per node; C{reason} says why).
    """

    kind: ClassVar[str] = "schedule.heal_failed"

    schedid: int
    expid: int
    ownerid: int
    nodeid: str
    start: int
    stop: int


@attrs.frozen(kw_only=True)
class BookingMade(Event):
    """
    A request was booked: a new experiment with its schedules.
    """

    kind: ClassVar[str] = "booking.made"

    expid: int
    ownerid: int
    schedids: tuple[int, ...]
    nodeids: tuple[str, ...]
    status: str
    start: int
    stop: int
    sliceURN: Optional[str] = None


@attrs.frozen(kw_only=True)
class BookingRefused(Event):
    """
    A well-formed request could not be booked (no slot, quota, policy); nothing
    was written.
    """

    kind: ClassVar[str] = "booking.refused"

    ownerid: Optional[int]
    name: str
    sliceURN: Optional[str] = None


@attrs.frozen(kw_only=True)
class ExperimentArchived(Event):
    """
    An experiment moved along the experiment table to C{archived}.
    """

    kind: ClassVar[str] = "experiment.archived"

    expid: int
    ownerid: int
    old: str
    new: str


@attrs.frozen(kw_only=True)
class NodeStatusChanged(Event):
    """
    A node moved along the node table, or appeared (C{old} is C{None}).
    """

    kind: ClassVar[str] = "node.status"

    nodeid: str
    old: Optional[str]
    new: str


@attrs.frozen(kw_only=True)
class NodeUpdated(Event):
    """
    A node's facts changed without a status change: tags, hostname, pairing.
    """

    kind: ClassVar[str] = "node.updated"

    nodeid: str
    fields: tuple[str, ...]


@attrs.frozen(kw_only=True)
class NodeHeard(Event):
    """
    A node that had been silent for longer than the freshness bound
    (C{imminent_heartbeat_age}) heartbeats again; C{previous} is its last
    heartbeat before (0: never).
    """

    kind: ClassVar[str] = "node.heard"

    nodeid: str
    previous: int


@attrs.frozen(kw_only=True)
class NotificationQueued(Event):
    """
    A notification of this experiment was written to the outbox (by the
    in-transaction recorder L{am.core.outbox.record}, in the same
    transaction as the change it reports): the deliverer looks at the outbox
    at once only then, not after every change of an experiment nobody follows.
    """

    kind: ClassVar[str] = "notification.queued"

    expid: int
    event: str


@attrs.frozen(kw_only=True)
class UserChanged(Event):
    """
    A user's account changed: invalidated, or its fingerprint replaced
    (faces that remember users forget this one).
    """

    kind: ClassVar[str] = "user.changed"

    userid: int
    fields: tuple[str, ...]


Subscriber = Callable[[Event], Any]
#: Called with the transaction and its events just before commit, on the
#: store's thread (L{EventStream.subscribeInTransaction}); it may return
#: events saying what it wrote (or C{None}).
Recorder = Callable[[Any, tuple[Event, ...]], Optional[Iterable[Event]]]


class CoreTransaction:
    """
    A store transaction as the core's rules see it: every
    L{am.core.interfaces.IStoreTransaction} method of the store's
    transaction, plus the events the change produced and work to do once the
    rules are done, before commit.
    """

    def __init__(self, txn: Any) -> None:
        self._txn = txn
        self.events: list[Event] = []
        self._finally: dict[Any, Callable[[], None]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    def emit(self, event: Event) -> None:
        """
        Record C{event}; it is delivered if and when the transaction commits.
        """
        self.events.append(event)

    def beforeCommit(self, key: Any, work: Callable[[], Any]) -> None:
        """
        Run C{work} once, after the rules and before commit; a second call with
        the same C{key} is a no-op (e.g. one archive check per experiment).
        """
        self._finally.setdefault(key, work)

    def finish(self) -> None:
        """
        Run the pending before-commit work, including any it adds.
        """
        while self._finally:
            key = next(iter(self._finally))
            self._finally.pop(key)()


def emit(txn: Any, event: Event) -> None:
    """
    Record C{event} on C{txn}. A bare store transaction (rules run straight
    on a store, outside any L{am.core.scheduler.Scheduler}) has no
    subscribers, so the event has nobody to go to.
    """
    record = getattr(txn, "emit", None)
    if record is not None:
        record(event)


def beforeCommit(txn: Any, key: Any, work: Callable[[], Any]) -> None:
    """
    Run C{work} before C{txn} commits, once per C{key}; on a bare store
    transaction, at once.
    """
    later = getattr(txn, "beforeCommit", None)
    if later is None:
        work()
    else:
        later(key, work)


def runCommand(
    txn: Any, function: Callable[..., Any], args: tuple, kwargs: dict, recorders: tuple[Recorder, ...] = (),
) -> tuple[Any, tuple[Event, ...]]:
    """
    Run one command's rules in C{txn} (inside the store's transaction) and
    return its result with the events it recorded; the C{recorders} see the
    events before commit, in the same transaction (a persistent outbox), and
    the events they return (what they wrote) follow the command's own.
    """
    core = CoreTransaction(txn)
    result = function(core, *args, **kwargs)
    core.finish()
    events = tuple(core.events)
    if events:
        written: list[Event] = []
        for recorder in recorders:
            written.extend(recorder(txn, events) or ())
        events += tuple(written)
    return result, events


# A command takes ids and plain values and re-reads what it changes: a store
# may run it again from the start after losing a race (L{am.store.postgres}).
runCommand.rerunnable = True  # type: ignore[attr-defined]


class EventStream:
    """
    In-process subscribers to the core's events.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.recorders: tuple[Recorder, ...] = ()

    def subscribeInTransaction(self, recorder: Recorder) -> None:
        """
        Call C{recorder(txn, events)} inside every command's transaction, after
        its rules and before commit, on the store's thread: for what must be
        durable with the change (the notification outbox). It must only
        write through C{txn}; an exception rolls the command back. The
        events it returns (what it wrote) are delivered after the command's
        own; they are not recorded again.
        """
        self.recorders = self.recorders + (recorder,)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """
        Call C{subscriber(event)} for every event delivered from now on.

        @return: a callable that unsubscribes.
        """
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def deliver(self, events: tuple[Event, ...] | list[Event]) -> None:
        """
        Hand each event to every subscriber; never raises.
        """
        for event in events:
            for subscriber in list(self._subscribers):
                try:
                    result = subscriber(event)
                except Exception:
                    _log.failure("event subscriber {subscriber!r} failed on {kind}",
                                 subscriber=subscriber, kind=event.kind)
                    continue
                if isinstance(result, Deferred):
                    result.addErrback(  # type: ignore[call-overload]
                        lambda f, s=subscriber, k=event.kind: _log.failure(
                            "event subscriber {subscriber!r} failed on {kind}", f, subscriber=s, kind=k
                        )
                    )
