# -*- test-case-name: tests.test_store_pgtrips -*-
"""
A booking's rows in as few statements as PostgreSQL allows.

An experiment and its one schedule (an any-node booking's, the common case) go
in one statement: both C{INSERT}s as data-modifying C{WITH}s, the schedule's
taking the new id from the experiment's, the schedule's id and the experiment
as stored returned; a round trip less per booking than the two inserts one
after the other, and one more as the experiment answers the command's next
read of it. Several schedules take their ids first and go in one batch, in
node then start order.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Optional

from am.core.model import Experiment, Schedule
from am.store.pgahead import MISSING, Ahead
from am.store.rows import EXPERIMENT_COLUMNS, experimentFromRow, recordKey

_EXPERIMENT = (
    "INSERT INTO experiments (name, script, nodetypes, start, stop, recurring_until, "
    "options, status, slice_urn, ownerid, created) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING "
)
_COLUMNS = (
    "expid, nodeid, start, stop, status, reason, shared, blocking, deployment_options, "
    "charged_time, charged_data, charged_storage, expires, updated"
)
_MARKS = ", ".join(["%s"] * 13)
# The schedule's id, then the experiment as stored (EXPERIMENT_COLUMNS).
_BOTH = (
    f"WITH e AS ({_EXPERIMENT}{EXPERIMENT_COLUMNS}), "
    f"s AS (INSERT INTO schedules ({_COLUMNS}) VALUES ((SELECT id FROM e), {_MARKS}) RETURNING id) "
    "SELECT s.id, e.* FROM s, e"
)


class BookingRows:
    """
    The inserts of experiments and schedules (a mixin of the PostgreSQL transaction).
    """

    _db: Any
    _feed: Any
    _ahead: Ahead
    _one: Callable[..., Optional[tuple]]
    _all: Callable[..., list[tuple]]
    _experimentRow: Callable[[Experiment], tuple]
    _noteLongest: Callable[[Iterable[Schedule]], None]

    def _experimentValues(self, experiment: Experiment) -> tuple:
        return (*self._experimentRow(experiment), experiment.ownerid, experiment.created)

    def _scheduleRow(self, s: Schedule) -> tuple:
        return (
            s.expid, str(s.nodeid), s.start, s.stop, s.status, s.reason, bool(s.shared),
            bool(s.blocking), json.dumps(s.deploymentOptions), s.chargedTime, s.chargedData,
            s.chargedStorage, s.expires, s.updated,
        )

    def addExperiment(self, experiment: Experiment) -> int:
        row = self._one(_EXPERIMENT + "id", *self._experimentValues(experiment))
        assert row is not None
        experiment.id = row[0]
        return experiment.id

    def addBooking(self, experiment: Experiment, schedules: list[Schedule]) -> int:
        if len(schedules) != 1:
            return super().addBooking(experiment, schedules)  # type: ignore[misc, no-any-return]
        [schedule] = schedules
        if self._feed is not None:
            self._feed.written([schedule.nodeid])
        row = self._one(_BOTH, *self._experimentValues(experiment), *self._scheduleRow(schedule)[1:])
        assert row is not None
        stored = experimentFromRow(row[1:])
        experiment.id = schedule.expid = stored.id
        schedule.id = row[0]
        # The experiment as stored answers the transaction's next read of it
        # (the notification outbox's, in the same command): a round trip less.
        self._ahead.keep(stored, "experiment", stored.id)
        self._noteLongest(schedules)
        return experiment.id

    def getExperiment(self, expid: int) -> Optional[Experiment]:
        kept = self._ahead.take("experiment", recordKey(expid))
        return super().getExperiment(expid) if kept is MISSING else kept  # type: ignore[misc, no-any-return]

    def updateExperiment(self, experiment: Experiment) -> None:
        self._ahead.take("experiment", recordKey(experiment.id))
        super().updateExperiment(experiment)  # type: ignore[misc]

    def addSchedules(self, schedules: list[Schedule]) -> list[int]:
        schedules = list(schedules)
        if self._feed is not None:
            self._feed.written(s.nodeid for s in schedules)
        if len(schedules) == 1:
            [schedule] = schedules
            row = self._one(
                f"INSERT INTO schedules ({_COLUMNS}) VALUES (%s, {_MARKS}) RETURNING id", *self._scheduleRow(schedule)
            )
            assert row is not None
            schedule.id = row[0]
        elif schedules:
            # Take the ids first (increasing, if not always consecutive), then
            # insert in one pipelined batch.
            ids = sorted(
                r[0]
                for r in self._all(
                    "SELECT nextval(pg_get_serial_sequence('schedules', 'id')) "
                    "FROM generate_series(1, %s)",
                    len(schedules),
                )
            )
            for schedule, newid in zip(schedules, ids):
                schedule.id = newid
            # Inserted in node then start order: two bookings whose windows
            # collide wait on the exclusion constraint in one order, never
            # each for the other.
            ordered = sorted(schedules, key=lambda s: (str(s.nodeid), s.start, s.id))
            with self._db.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO schedules (id, {_COLUMNS}) VALUES (%s, %s, {_MARKS})",
                    [(s.id, *self._scheduleRow(s)) for s in ordered],
                )
        self._noteLongest(schedules)
        return [s.id for s in schedules]
