# -*- test-case-name: tests.test_store -*-
"""
The store behind the scheduling core.

Rules run inside L{IStore.transact} against an L{IStoreTransaction}: the whole
function is one atomic transaction, so check-and-insert cannot interleave with
another writer. SQLite (L{am.store.sqlite}) is the embedded default; PostgreSQL
(L{am.store.postgres}) serves several controllers sharing one database.
"""

from __future__ import annotations

from typing import Any

import attrs
from zope.interface import Attribute, Interface


@attrs.frozen
class ReadAhead:
    """
    What a small, frequent command reads before it writes (a heartbeat: its
    caller, its node, the node's queued and upcoming tasks: C{tasksOfNode(nodeid,
    start, stop, queued)}), so that a store paying a round trip per read may
    make a whole batch's in one (L{am.store.pgahead}). A hint: a store may
    ignore it, and a read it did not foresee is made as usual.
    """

    userid: Any
    nodeid: str
    start: int
    stop: int
    queued: int


class IStore(Interface):
    """
    Persistence for the scheduling core.
    """

    def transact(function, *args, **kwargs):
        """
        Run C{function(transaction, *args, **kwargs)} atomically, off the reactor thread.
        Any exception rolls everything back and leaves the store usable.

        @return: a Deferred firing with the function's result.
        """

    def read(function, *args, **kwargs):
        """
        Like L{transact}, for a function that only reads: a store may run it
        without taking the writers' lock (PostgreSQL: a read-only snapshot).

        @return: a Deferred firing with the function's result.
        """

    def close():
        """
        Finish pending work and release the database.

        @return: a Deferred.
        """


class IStoreTransaction(Interface):
    """
    Data access inside one transaction. No rules: just rows in and out as model objects.
    """

    schemaVersion = Attribute("The schema version of the open database.")

    # nodes
    def putNode(node):
        """Insert or update a node (its status, hostname, heartbeat, interfaces and both tag sets)."""

    def getNode(nodeid):
        """The L{am.core.model.Node} or C{None}."""

    def listNodes():
        """Every node, ordered by id."""

    def nodeView():
        """
        The L{am.core.nodeview.NodeView} of the nodes as this transaction sees
        them (tags, status, pairs; heartbeats of other controllers may be up to
        a second old). Kept between transactions: read it, never change it.
        """

    def setHeartbeat(nodeid, when, status, interfaces):
        """Record a heartbeat; C{status} and C{interfaces} may be C{None} to leave them."""

    def nodeHasSchedules(nodeid):
        """Whether any schedule refers to the node (such nodes are never deleted)."""

    def deleteNode(nodeid):
        """Remove a node with no schedules (and the pair it is in)."""

    # node health (issue 16: self-healing)
    def getHealth(nodeid):
        """The L{am.core.model.NodeHealth} of a node (zeros when it has none)."""

    def putHealth(health):
        """Insert or update a node's health record."""

    def listHealth():
        """
        Every health record by node id (L{am.core.health.HealthRecords}). Kept
        between transactions until a health write commits: read it, never
        change it or its records.
        """

    # node pairs (legacy head/tail nodes)
    def setPair(headid, tailid):
        """
        Make C{headid} the head and C{tailid} the tail of a pair, first removing
        any pair either node is in: a node is in at most one pair.
        """

    def deletePairs(nodeid):
        """Remove the pair the node is in, as head or tail; return how many pairs were removed."""

    def listPairs():
        """Every pair as a C{(head id, tail id)} tuple, ordered by head id."""

    # users and quotas
    def addUser(user):
        """Insert a user; return its new id. Fingerprint and URN are unique."""

    def updateUser(user):
        """Write back a user's fields."""

    def getUser(userid):
        """The L{am.core.model.User} or C{None}."""

    def findUser(fingerprint=None, urn=None, name=None, project=None):
        """The user matching any one given key, or C{None}."""

    def listUsers():
        """Every user, ordered by id."""

    def getQuotas(userid):
        """A dict kind -> L{am.core.model.Quota}."""

    def putQuota(userid, quota):
        """Insert or update one quota."""

    def addJournal(entry):
        """Append a L{am.core.model.JournalEntry}."""

    def listJournal(userid):
        """A user's journal, oldest first."""

    # experiments and schedules
    def addExperiment(experiment):
        """Insert an experiment; return its new id."""

    def updateExperiment(experiment):
        """Write back an experiment's fields."""

    def getExperiment(expid):
        """The L{am.core.model.Experiment} or C{None}."""

    def findExperiments(ownerid=None, status=None, sliceURN=None):
        """Experiments matching all given keys, ordered by id."""

    def addSchedules(schedules):
        """Insert schedules; set and return their new ids."""

    def addBooking(experiment, schedules):
        """
        Insert an experiment and its schedules (their C{expid} set to its new
        id), in as few statements as the store can; set their ids and return
        the experiment's.
        """

    def updateSchedule(schedule):
        """Write back a schedule's status, reason, shared flag, window, options and charges."""

    def getSchedule(schedid):
        """The L{am.core.model.Schedule} or C{None}."""

    def schedulesOfExperiment(expid):
        """An experiment's schedules, ordered by start then id."""

    def schedulesOfNode(nodeid, start, stop, limit=None):
        """
        A node's schedules overlapping C{[start, stop)}, ordered by start.
        Schedules never placed (start -1: queued, or canceled while queued)
        have no window and are never returned.
        """

    def schedulesOverlapping(start, stop, ownerid=None):
        """
        All schedules overlapping C{[start, stop)}, optionally of one owner,
        ordered by start; never those not placed (start -1).
        """

    def bookedIn(start, stop, nodeid=None, after=None, limit=None, withoutStatus=()):
        """
        The L{am.core.model.Booked} tuples of placed schedules overlapping
        C{[start, stop)} (optionally of one node, leaving out the statuses
        given), ordered by start then id, each with its experiment's owner
        (0 if none), in one query. C{after=(start, id)} continues a listing
        after that row (keyset paging); C{limit} caps the count. Must use an
        index, so a page costs the same however many schedules there are.
        """

    def feedRows(start, stop, nodeid=None, ownerid=None, expid=None):
        """
        The L{am.core.model.FeedRow}s of placed schedules overlapping
        C{[start, stop)}, optionally of one node, owner or experiment, ordered
        by start then id, each with its experiment's name and owner, in one query.
        """

    def blockingIntervals(start, stop, nodeids=None):
        """
        The L{am.core.model.Interval}s of blocking schedules that overlap C{[start, stop)},
        optionally only for the given node ids, in no particular order. Must use
        an index, never a full scan. C{queued} schedules never block.
        """

    def expiredAllocations(now):
        """Schedules still C{allocated} whose allocation expired before C{now}, in no particular order."""

    def overdueSchedules(before):
        """
        Schedules still open on the node side (C{defined}, C{requested},
        C{deployed}, C{delayed}, C{started}, C{restarted}) whose window ended
        at or before C{before}, in no particular order; through an index.
        """

    def queuedSchedules(nodeid, limit=None):
        """A node's C{queued} schedules (the low-priority queue), oldest (lowest id) first."""

    def tasksOfNode(nodeid, start, stop, queued):
        """
        What a heartbeat reads of its node: C{(queuedSchedules(nodeid,
        queued), schedulesOfNode(nodeid, start, stop))}, which a store may
        answer in one round trip.
        """

    def expiredQueue(now):
        """C{queued} schedules whose queue expiry (C{expires}) is before C{now}, in no particular order."""

    def countSchedules():
        """How many schedules there are (for statistics)."""

    def putTraffic(schedid, meter, value):
        """Record the latest value of one traffic meter of a schedule."""

    def trafficOf(schedid):
        """A schedule's traffic meters: a dict meter -> bytes."""

    # results (docs/results.md)
    def putResultFile(result):
        """Insert or replace a L{am.core.model.ResultFile} (one per schedule and path)."""

    def resultFiles(schedid):
        """A schedule's result files, ordered by path."""

    def deleteResultFile(schedid, path):
        """Forget one result file."""

    def staleResultFiles(before, limit):
        """At most C{limit} result files stored before C{before}, oldest first, through an index."""

    def openResultWindow(schedid, closes):
        """Accept uploads for an ended schedule until C{closes} (insert or replace)."""

    def resultWindow(schedid):
        """When the upload window of an ended schedule closes, or C{None} if it has none."""

    def closedResultWindows(now):
        """Schedule ids whose upload window closed at or before C{now}, through an index."""

    def closeResultWindow(schedid):
        """Remove a schedule's upload window."""

    def addPublicKey(schedid, public, expires):
        """Remember the public SSH key of a task until C{expires}."""

    def publicKeys(now):
        """The public SSH keys of tasks that have not expired or become final."""

    # the notification outbox (am.core.outbox)
    def addNotification(entry):
        """
        Insert an L{am.core.model.Notification}, numbering it after the
        experiment's last one (C{seq}); set and return its id.
        """

    def updateNotification(entry):
        """Write back a notification's delivery state, attempts, due time and lease."""

    def getNotification(outid):
        """The L{am.core.model.Notification} or C{None}."""

    def dueNotifications(now, limit):
        """
        Pending notifications due at C{now} whose lease (if any) ran out,
        earliest due first, at most C{limit}; through an index.
        """

    def nextNotificationDue():
        """The earliest due time of a pending notification, or C{None}."""

    def leasedNotifications(worker):
        """The pending notifications C{worker} holds a lease on."""

    def notificationsOf(expid):
        """An experiment's notifications, by sequence number."""

    def pruneNotifications(states, before, limit):
        """
        Delete up to C{limit} notifications in one of C{states} that happened
        before C{before}, oldest first, never an experiment's newest (its
        numbering continues from it); returns how many.
        """

    def getNotifySecret(userid):
        """The user's notification signing secret, or C{None}."""

    def putNotifySecret(userid, secret, now):
        """Set (or replace) the user's notification signing secret."""


class IScheduler(Interface):
    """
    The scheduling core as both faces see it: the only door to the model.

    Every command changes the model in exactly one store transaction, takes
    ids and plain values (never model objects read by an earlier call, which
    may be stale), decides every rule inside the core and returns a Deferred.
    Faces read through L{read} with a query of the transaction.
    """

    policy = Attribute("The scheduling policy (L{am.core.policy.Policy}).")
    events = Attribute(
        "The core's event stream (L{am.core.events.EventStream}): every committed change, "
        "as typed events, delivered to subscribers after commit."
    )

    waiters = Attribute("Requests waiting for a change (L{am.core.waiters.Waiters}), woken by the events.")
    clock = Attribute("The injected clock (C{IReactorTime}).")

    def now():
        """Whole UNIX seconds from the injected clock."""

    def read(function, *args, **kwargs):
        """Run a read-only query C{function(txn, *args, **kwargs)}."""

    # queries with rules in them
    def find(**query):
        """Free windows for a request, without booking (C{GET /schedules/find})."""

    def resolveSlice(target):
        """The L{am.core.slices.Slice} a L{am.core.slices.SliceTarget} names."""

    def offer(availableOnly):
        """The nodes and leases a GENI advertisement shows (L{am.core.slices.Offer})."""

    # bookings and schedules
    def allocate(request):
        """Book an L{am.core.requests.AllocationRequest} (a dry run only reads)."""

    def changeStatus(schedid, status, userid, when=None):
        """A node's status report or an owner's or admin's status change."""

    def reportTraffic(schedid, report, userid):
        """A node's traffic report for one of its schedules."""

    def heartbeat(userid, nodeid, maintenance=False, interfaces=None, limit=3):
        """A node's heartbeat; fires with its tasks."""

    def admitUpload(schedid, userid, path, size, sha256):
        """Whether a node may upload a results file of its task (read only)."""

    def recordResult(schedid, userid, path, size, sha256):
        """Record a results file that arrived whole and verified."""

    def settleResults():
        """Close due upload windows and refund the storage not filled."""

    def expireResults():
        """Forget result files past their retention."""

    def deleteExperiment(expid, userid):
        """Cancel or abort everything of an experiment and archive it."""

    def mergeExperiments(into, source, userid, name=None):
        """Move the schedules of experiment C{source} into C{into}."""

    def cancelOccurrences(expid, userid, occurrence=None, since=None):
        """Cancel one occurrence of a recurring booking, or all from C{since} on."""

    def moveOccurrence(expid, occurrence, userid, start, placement):
        """Move one occurrence to another free window (same nodes or same filter)."""

    def expireAllocations():
        """Cancel expired GENI allocations and queued tasks."""

    def sweep():
        """Fail what nobody ran: tasks no node deployed, tasks of nodes gone silent."""

    def heal():
        """Move the future windows of self-healing bookings off nodes that are down or failing."""

    # GENI slices
    def allocateSlice(request, userid):
        """GENI Allocate of an L{am.core.slices.SliceRequest} (a dry run only reads: the cost preview)."""

    def provision(target, userid, updates):
        """GENI Provision of a target's allocated slivers."""

    def performAction(target, userid, action, updates):
        """A GENI operational action (start, restart, stop, update_users)."""

    def renewSlivers(target, userid, stop, text, bestEffort=False):
        """GENI Renew: hold allocations or lengthen windows until C{stop}."""

    def endSlivers(target, userid):
        """GENI Delete of a target's slivers."""

    def shutdownSlice(sliceURN, operatorURN):
        """GENI Shutdown by an operator."""

    # users and nodes
    def addUser(**kwargs):
        """Create a user with default quotas."""

    def updateUser(userid, fingerprint=None, quota=None):
        """Change a user's fingerprint or quotas."""

    def invalidateUser(userid):
        """Invalidate a user."""

    def userForURN(urn):
        """The user of a verified GENI URN, registered on first use."""

    def bootstrapUsers(users):
        """Create the configured bootstrap users not known yet."""

    def setNode(nodeid, tags=None, status=None, pair=None, unpair=False):
        """An admin's node settings (tags, status, pair), all or nothing."""

    def applyInventory(entries, complete=True):
        """Apply an inventory snapshot."""

    # notifications (am.core.outbox)
    def rotateNotifySecret(userid, actorid):
        """Replace a user's notification signing secret; fires with the new one."""

    def notifySecret(userid, actorid):
        """The user's current notification secret, for that user only."""

    def claimNotifications(worker, limit=50, lease=60):
        """Lease due notifications to a deliverer."""

    def settleNotification(outid, worker, ok, error="", permanent=False):
        """Record one delivery attempt: delivered, retried later or given up."""

    def nextNotificationDue():
        """When the earliest pending notification is due, or None."""

    def releaseNotifications(worker):
        """Give back a stopping deliverer's unsettled claims."""

    def pruneNotifications(before, limit=500):
        """Delete up to C{limit} settled notifications of events before C{before}; fires with how many."""
