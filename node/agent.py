# -*- test-case-name: tests.test_node_agent,tests.test_node_resume,tests.test_node_controller -*-
"""
marvind's agent: the heartbeat loop and each task's life on the node.

Every period (with jitter) the agent sends one heartbeat; the reply lists the
node's tasks for the next 24 hours. A new task is deployed at once, started at
its start time and stopped at its stop time, each step by a hook (see
L{node.hooks}). Each step's outcome is queued as a status report, on disk,
and delivered in order; reports the controller cannot take now wait for the
next heartbeat that gets an answer. So in steady state (nothing changing) the
agent makes exactly one request per period.

All timing runs on an injected L{IReactorTime}, so tests drive it with
L{twisted.internet.task.Clock}. A task's next step is a timer, and every
heartbeat re-derives the timers from the saved state, so a missed timer (or a
wall-clock jump) costs at most one period.

After a restart the saved state is the truth: timers are re-armed, a stop
hook that was running is run again, and a task that was running is started
again (C{restarted}) when its C{restart} option allows it, or reported
C{failed; node rebooted during task}.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, Coroutine

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from node.client import ControllerResponse, ControllerUnreachable, IControllerClient
from node.config import MarvindConfig
from node.facts import ClockSkewWatch, NodeFacts
from node.hooks import (
    ENDED,
    IHookRunner,
    deployStatus,
    describeResult,
    startStatus,
    stopStatus,
)
from node.phases import Step, advance
from node.shipper import ResultShipper
from node.state import (
    DEPLOYED,
    DONE,
    NEW,
    RUNNING,
    STARTING,
    STOPPING,
    Report,
    StateStore,
    TaskRecord,
)
from node.wire import DROPPED, FINAL, RETRY, SETTLED, classifyReply, parseTask, statusCode

_log = Logger()


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


class MarvindAgent(Service):
    """
    The node agent.
    """

    name = "marvind"

    def __init__(
        self,
        config: MarvindConfig,
        clock: IReactorTime,
        client: IControllerClient,
        hooks: IHookRunner,
        store: StateStore,
        randomFloat: Callable[[], float] = random.random,
        shipper: ResultShipper | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._client = client
        self._hooks = hooks
        self._store = store
        self._random = randomFloat
        self._tasks: dict[str, TaskRecord] = {}
        self._queue: list[Report] = []
        self._timers: dict[str, IDelayedCall] = {}
        self._busy: set[str] = set()
        self._heartbeatCall: IDelayedCall | None = None
        self._authenticated = False
        self._reachable = False
        self._flushing = False
        self._maintenance = False
        self._silentBeats = 0
        self._facts = NodeFacts(config.maintenanceFile, config.interfacesFile)
        self._skew = ClockSkewWatch(config.maxClockSkew)
        self._shipper = shipper
        if shipper is not None:
            shipper.overQuota = self.storageExceeded

    # -- service ---------------------------------------------------------

    def startService(self) -> None:
        """
        Load the saved state, resume every task, and start heartbeating.
        """
        super().startService()
        self._tasks, self._queue = self._store.load()
        for task in self._tasks.values():
            if task.phase in (STARTING, RUNNING):
                # We went down while it ran: it is redone from "deployed".
                task.phase = advance(task.phase, Step.REBOOTED)
                task.interrupted = True
        if self._tasks or self._queue:
            _log.info(
                "Resuming {tasks} task(s) with {reports} undelivered report(s)",
                tasks=len(self._tasks), reports=len(self._queue),
            )
        self._maintenance = self._facts.maintenance()
        self._commit()
        for task in list(self._tasks.values()):
            self._advance(task)
        # Nodes restarted together (a power cut, a fleet upgrade) spread out.
        first = self._config.heartbeatPeriod * self._config.heartbeatJitter * self._random()
        self._heartbeatCall = self._clock.callLater(first, self._beat)
        if self._shipper is not None:
            self._shipper.startService()

    def stopService(self) -> Deferred[None]:
        """
        Stop the timers and close idle connections. Running hooks are left
        alone; the saved state says what to redo at the next start.
        """
        super().stopService()
        if self._heartbeatCall is not None and self._heartbeatCall.active():
            self._heartbeatCall.cancel()
        self._heartbeatCall = None
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()
        if self._shipper is not None:
            self._shipper.stopService()
        return self._client.close()

    @property
    def tasks(self) -> dict[str, TaskRecord]:
        """
        The tasks the agent knows, by schedule id (read-only use).
        """
        return self._tasks

    @property
    def queue(self) -> list[Report]:
        """
        The status reports not delivered yet, oldest first (read-only use).
        """
        return self._queue

    @property
    def controllerReachable(self) -> bool:
        """
        Whether the last exchange with the controller got a usable answer.
        """
        return self._reachable

    @property
    def unansweredHeartbeats(self) -> int:
        """
        Heartbeats in a row that got no answer.
        """
        return self._silentBeats

    # -- heartbeat ---------------------------------------------------------

    def _nextDelay(self) -> float:
        """
        The period, times 1 ± jitter, so that nodes do not beat in step.
        """
        jitter = self._config.heartbeatJitter
        return self._config.heartbeatPeriod * (1 + jitter * (2 * self._random() - 1))

    def _beat(self) -> None:
        """
        One heartbeat cycle; the next is scheduled when it is over, so cycles never overlap.
        """
        self._heartbeatCall = None
        d = Deferred.fromCoroutine(self._cycle())
        d.addErrback(lambda f: _log.failure("Heartbeat failed", f))

        def again(_: object) -> None:
            if self.running:
                self._heartbeatCall = self._clock.callLater(self._nextDelay(), self._beat)

        d.addCallback(again)

    async def _cycle(self) -> None:
        try:
            if self._authenticated or await self._authenticate():
                await self._heartbeat()
        finally:
            self._localWork()

    async def _authenticate(self) -> bool:
        """
        Check our certificate once at start-up. Unlike the legacy agent, a refusal is
        retried, never a reason to exit.
        """
        try:
            response = await self._client.checkAuth()
        except ControllerUnreachable as e:
            self._silentBeats += 1
            if self._silentBeats % 10 == 1:  # as for heartbeats: first, then one in ten
                _log.warn(
                    "Controller unreachable at start-up ({error}), {count} time(s); trying again "
                    "in about {period:g} s",
                    error=str(e), count=self._silentBeats, period=self._config.heartbeatPeriod,
                )
            return False
        self._checkSkew(response)
        if response.code == 401:
            _log.error(
                "The controller does not accept this node's certificate ({code}: {message}); "
                "trying again in about {period:g} s",
                code=response.code, message=response.message, period=self._config.heartbeatPeriod,
            )
            return False
        if response.code == 200 and isinstance(response.body, dict):
            _log.info(
                "Controller accepted our certificate (fingerprint {fingerprint}, user {user})",
                fingerprint=response.body.get("fingerprint"), user=response.body.get("user"),
            )
        else:
            _log.warn(
                "Unexpected answer {code} to the certificate check; going on", code=response.code
            )
        self._authenticated = True
        return True

    async def _heartbeat(self) -> None:
        """
        Send the heartbeat, act on the tasks it returns, then deliver waiting reports.
        """
        self._maintenance = self._facts.maintenance()
        try:
            response = await self._client.heartbeat(
                self._config.nodeId, self._maintenance, self._facts.interfaces(),
                self._config.taskLimit, sorted(self._tasks),
            )
        except ControllerUnreachable as e:
            self._reachable = False
            self._silentBeats += 1
            # The first failure and then one in ten: an outage of hours
            # should not flood the log.
            if self._silentBeats % 10 == 1:
                _log.warn(
                    "Heartbeat got no answer ({error}), {count} in a row; {reports} report(s) "
                    "waiting", error=str(e), count=self._silentBeats, reports=len(self._queue),
                )
            return
        if self._silentBeats:
            _log.info(
                "Controller answers again after {count} unanswered heartbeat(s)",
                count=self._silentBeats,
            )
            self._silentBeats = 0
        self._checkSkew(response)
        if response.code in (401, 403):
            _log.error(
                "The controller refused the heartbeat ({code}: {message}): is this node's "
                "certificate registered as node {node}?",
                code=response.code, message=response.message, node=self._config.nodeId,
            )
            return
        body = response.body
        tasks = body.get("tasks") if isinstance(body, dict) else None
        if response.code != 200 or not isinstance(tasks, list):
            _log.warn(
                "Unusable heartbeat answer ({code}: {message})",
                code=response.code, message=response.message,
            )
            return
        self._reachable = True
        self._processTasks(tasks)
        await self._flush(waited=True)

    def _checkSkew(self, response: ControllerResponse) -> None:
        self._skew.observe(response.date, self._clock.seconds())

    @property
    def clockSkew(self) -> float | None:
        """
        The controller's clock minus ours, in seconds, from the last answer.
        """
        return self._skew.skew

    def _processTasks(self, tasks: list[Any]) -> None:
        """
        Take on new tasks, and stop tasks the controller has ended (canceled, aborted...).
        """
        now = self._clock.seconds()
        for raw in tasks:
            try:
                info = parseTask(raw)
            except ValueError as e:
                _log.warn("Ignoring a task from the controller: {error}", error=str(e))
                continue
            code = statusCode(info.status)
            task = self._tasks.get(info.id)
            if task is None:
                if code in FINAL or info.stop <= now:
                    continue
                task = TaskRecord(
                    id=info.id, expid=info.expid, start=info.start, stop=info.stop,
                    options=info.options,
                    # The controller has it running but we have no record:
                    # our state was lost, which is as good as a reboot.
                    interrupted=code in ("started", "restarted"),
                )
                serial = info.options.get("run_serial")
                if isinstance(serial, int):
                    # Stopped (or started again) before we first saw it.
                    task.runSerial = serial
                    task.paused = info.options.get("run_state") == "stopped"
                _log.info(
                    "New task {id} (experiment {expid}) from {start} to {stop}",
                    id=task.id, expid=task.expid, start=_iso(task.start), stop=_iso(task.stop),
                )
                self._tasks[task.id] = task
                self._commit()
                self._advance(task)
            elif code in FINAL and task.phase != DONE and not task.canceled:
                _log.info(
                    "Task {id} is {status} on the controller: stopping and removing it",
                    id=task.id, status=info.status,
                )
                task.canceled = True
                self._commit()
                self._advance(task)
            elif code not in FINAL and task.phase != DONE and info.options != task.options:
                self._newOptions(task, info.options)

    def _newOptions(self, task: TaskRecord, options: dict[str, Any]) -> None:
        """
        The controller changed a task's options: new login keys are written
        for the hooks at once; a raised C{run_serial} asks to stop the task
        (C{run_state} C{stopped}), run it again, or restart it.
        """
        task.options = options
        if task.phase not in (NEW, DONE):
            self._store.writeTaskConfig(task, self._config.nodeId)
        serial = options.get("run_serial")
        if isinstance(serial, int) and serial > task.runSerial:
            task.runSerial = serial
            wanted = options.get("run_state", "running")
            if wanted == "stopped" and not task.paused:
                _log.info("Task {id}: stop requested", id=task.id)
                task.paused = True
                if task.phase in (STARTING, RUNNING):
                    task.phase, task.stopAs = advance(task.phase, Step.STOP), "paused"
            elif wanted == "running" and task.paused:
                _log.info("Task {id}: start requested", id=task.id)
                task.paused = False
            elif wanted == "running" and task.phase in (STARTING, RUNNING):
                _log.info("Task {id}: restart requested", id=task.id)
                task.phase, task.stopAs = advance(task.phase, Step.STOP), "restart"
        self._commit()
        self._advance(task)

    def _localWork(self) -> None:
        """
        Once per heartbeat, whether or not the controller answered: forget
        finished tasks whose window has passed, re-derive every timer, and
        ask the check hook whether running tasks are still running.
        """
        if not self.running:
            return
        now = self._clock.seconds()
        waiting = {r.schedid for r in self._queue}
        for task in list(self._tasks.values()):
            if task.phase == DONE and task.stop <= now and task.id not in waiting:
                self._forget(task)
            else:
                self._advance(task)
        if "check" not in self._config.hooks:
            return
        for task in list(self._tasks.values()):
            if task.phase == RUNNING and task.id not in self._busy and not task.canceled:
                self._step(task, self._check(task))

    # -- reports -----------------------------------------------------------

    def _queueReport(self, task: TaskRecord, status: str) -> None:
        """
        Queue C{status} for C{task} unless it is the one last queued; the caller commits.
        """
        if status == task.lastStatus:
            return
        task.lastStatus = status
        self._queue.append(Report(task.id, status, int(self._clock.seconds())))
        _log.info("Task {id}: {status}", id=task.id, status=status)

    def _commit(self) -> None:
        """
        Save the state, then deliver queued reports at once if the controller
        answered last time.
        """
        self._store.save(self._tasks, self._queue)
        if self.running and self._reachable and self._queue and not self._flushing:
            d = Deferred.fromCoroutine(self._flush())
            d.addErrback(lambda f: _log.failure("Delivering status reports failed", f))

    async def _flush(self, waited: bool = False) -> None:
        """
        Deliver queued reports in order, until one cannot be delivered now.

        @param waited: the reports waited for this heartbeat (log it).
        """
        if self._flushing:
            return
        self._flushing = True
        delivered = 0
        try:
            while self._queue and self.running:
                report = self._queue[0]
                try:
                    response = await self._client.report(report.schedid, report.status, report.when)
                except ControllerUnreachable as e:
                    self._reachable = False
                    _log.warn(
                        "Cannot deliver {count} status report(s) now ({error}); will retry",
                        count=len(self._queue), error=str(e),
                    )
                    return
                self._checkSkew(response)
                verdict = classifyReply(response)
                if verdict == RETRY:
                    self._reachable = False
                    _log.warn(
                        "Controller did not take status {status} for {id} ({code}: {message}); "
                        "will retry", status=report.status, id=report.schedid,
                        code=response.code, message=response.message,
                    )
                    return
                if verdict == SETTLED:
                    _log.info(
                        "Controller already holds a final status for {id} ({message}); "
                        "dropping status {status}", status=report.status, id=report.schedid,
                        message=response.message,
                    )
                if verdict == DROPPED:
                    _log.warn(
                        "Controller refused status {status} for {id} ({code}: {message}); "
                        "dropping it", status=report.status, id=report.schedid,
                        code=response.code, message=response.message,
                    )
                self._queue.remove(report)
                self._store.save(self._tasks, self._queue)
                delivered += 1
        finally:
            self._flushing = False
            if waited and delivered:
                _log.info(
                    "Delivered {count} status report(s) that waited for the controller",
                    count=delivered,
                )

    # -- tasks -------------------------------------------------------------

    def _arm(self, task: TaskRecord, when: float) -> None:
        self._disarm(task)
        delay = max(0.0, when - self._clock.seconds())
        self._timers[task.id] = self._clock.callLater(delay, self._wake, task)

    def _disarm(self, task: TaskRecord) -> None:
        call = self._timers.pop(task.id, None)
        if call is not None and call.active():
            call.cancel()

    def _wake(self, task: TaskRecord) -> None:
        self._timers.pop(task.id, None)
        self._advance(task)

    def _step(self, task: TaskRecord, work: Coroutine[Any, Any, None]) -> None:
        """
        Run one step (a hook and what follows) for C{task}; no other step of
        the task runs meanwhile. When it ends the task advances again.
        """
        self._disarm(task)
        self._busy.add(task.id)
        d = Deferred.fromCoroutine(work)

        def failed(f: Any) -> None:
            _log.failure("Unexpected error handling task {id}", f, id=task.id)
            self._busy.discard(task.id)
            if self.running and self._tasks.get(task.id) is task:
                self._arm(task, self._clock.seconds() + self._config.heartbeatPeriod)

        def done(_: object) -> None:
            self._busy.discard(task.id)
            if self._tasks.get(task.id) is task:
                self._advance(task)

        d.addCallbacks(done, failed)

    def _advance(self, task: TaskRecord) -> None:
        """
        Do whatever is due for C{task} now, or arm a timer for when it is.
        """
        if not self.running or task.id in self._busy or self._tasks.get(task.id) is not task:
            return
        now = self._clock.seconds()
        if task.canceled:
            if task.phase in (NEW, DONE):
                self._forget(task)
            else:
                task.phase, task.stopAs = advance(task.phase, Step.STOP), "aborted"
                self._step(task, self._stop(task))
        elif task.paused and task.phase in (NEW, DEPLOYED):
            # Stopped on request: it waits for a start, or ends at its stop time.
            if now >= task.stop:
                self._finish(task, "stopped", Step.GAVE_UP)
            else:
                self._arm(task, task.stop)
        elif task.phase == NEW:
            if now >= task.stop:
                self._finish(task, "failed; the task window closed before it could be deployed", Step.GAVE_UP)
            elif not task.image:
                self._finish(task, "failed; no container image (deployment option script)", Step.GAVE_UP)
            elif task.retryAt is not None and now < task.retryAt:
                self._arm(task, task.retryAt)
            elif self._maintenance:
                task.retryAt = now + self._config.heartbeatPeriod
                self._queueReport(task, "delayed; cannot deploy while node is in maintenance mode")
                self._commit()
                self._arm(task, task.retryAt)
            else:
                self._step(task, self._deploy(task))
        elif task.phase == DEPLOYED:
            if now >= task.stop:
                if task.interrupted:
                    # It ran until we went down; the stop hook says how it ended.
                    task.phase, task.stopAs = advance(task.phase, Step.STOP), "stopped"
                    self._step(task, self._stop(task))
                else:
                    self._fail(task, "failed; the stop time passed before the task could start")
            elif now >= task.start:
                if task.interrupted and not task.restartAllowed:
                    self._fail(task, "failed; node rebooted during task")
                else:
                    self._step(task, self._start(task))
            else:
                self._arm(task, task.start)
        elif task.phase == RUNNING:
            if now >= task.stop:
                task.phase, task.stopAs = advance(task.phase, Step.STOP), "stopped"
                self._step(task, self._stop(task))
            else:
                self._arm(task, task.stop)
        elif task.phase == STOPPING:
            self._step(task, self._stop(task))

    def _fail(self, task: TaskRecord, status: str) -> None:
        """
        Report C{status} now, then let the stop hook clean up.
        """
        self._queueReport(task, status)
        task.phase, task.stopAs = advance(task.phase, Step.STOP), "failed"
        self._commit()
        self._step(task, self._stop(task))

    def _finish(self, task: TaskRecord, status: str | None, step: Step = Step.STOPPED) -> None:
        """
        The task is over here (C{step}: it gave up before deploying, or its
        stop hook is done): report its final status, drop its files.
        """
        if status is not None:
            self._queueReport(task, status)
        task.phase, task.retryAt = advance(task.phase, step), None
        self._disarm(task)
        self._store.removeTaskFiles(task.id)
        self._commit()
        if self._shipper is not None:
            self._shipper.finish(task.id)

    def _forget(self, task: TaskRecord) -> None:
        """
        Drop every local trace of C{task} but its log.
        """
        self._disarm(task)
        if self._tasks.get(task.id) is task:
            del self._tasks[task.id]
        self._store.removeTaskFiles(task.id)
        self._commit()
        if self._shipper is not None:
            self._shipper.finish(task.id)

    async def _deploy(self, task: TaskRecord) -> None:
        """
        Write the task's configuration and run the deploy hook.
        """
        self._store.writeTaskConfig(task, self._config.nodeId)
        os.makedirs(self._store.resultsDirectory(task.id), mode=0o755, exist_ok=True)
        result = await self._hooks.runHook("deploy", task, task.image)
        status = deployStatus(result)
        code = statusCode(status)
        if code == "deployed":
            if self._shipper is not None and task.storage > 0:
                self._shipper.track(task.id, self._store.resultsDirectory(task.id), task.storage)
            task.phase, task.retryAt = advance(task.phase, Step.DEPLOYED), None
            if not task.interrupted:
                self._queueReport(task, status)
            self._commit()
        elif code == "delayed":
            task.retryAt = self._clock.seconds() + self._config.heartbeatPeriod
            self._queueReport(task, status)
            self._commit()
        else:
            self._finish(task, status, Step.GAVE_UP)

    async def _start(self, task: TaskRecord) -> None:
        """
        Run the start hook (C{restarted} for an interrupted task); on failure, clean up next.
        """
        status = "restarted" if task.interrupted or task.ran else "started"
        task.phase = advance(task.phase, Step.START)
        self._commit()
        result = await self._hooks.runHook("start", task, status)
        outcome = startStatus(result, status)
        if outcome == status:
            task.phase, task.interrupted, task.ran = advance(task.phase, Step.STARTED), False, True
            self._queueReport(task, status)
            self._commit()
        else:
            self._queueReport(task, outcome)
            task.phase, task.stopAs = advance(task.phase, Step.STOP), "failed"
            self._commit()

    async def _stop(self, task: TaskRecord) -> None:
        """
        Run the stop hook for the reason in C{stopAs} and close the task accordingly.
        """
        reason = task.stopAs or "stopped"
        self._commit()
        onRequest = reason in ("paused", "restart")
        result = await self._hooks.runHook("stop", task, "stopped" if onRequest else reason)
        if onRequest:
            # Deployed afresh before it runs again (the stop hook may have
            # removed what deploy made); meanwhile the controller sees it
            # deployed, not running.
            if not result.ok and result.exitCode != ENDED:
                _log.warn("Stop hook for task {id} ({reason}) failed: {outcome}",
                          id=task.id, reason=reason, outcome=describeResult(result))
            task.phase, task.stopAs = advance(task.phase, Step.STOPPED_ON_REQUEST), None
            self._queueReport(task, "deployed; stopped on request")
            self._commit()
            return
        if reason == "stopped":
            self._finish(task, stopStatus(result))
            return
        if not result.ok and result.exitCode != ENDED:
            _log.warn(
                "Stop hook for task {id} ({reason}) failed: {outcome}",
                id=task.id, reason=reason, outcome=describeResult(result),
            )
        if reason == "aborted":
            self._forget(task)
        else:
            self._finish(task, "finished" if reason == "finished" else None)

    def storageExceeded(self, schedid: str) -> None:
        """
        The shipper found a running task's results over its storage
        allowance: stop it, as the legacy node did.
        """
        task = self._tasks.get(schedid)
        if task is None or task.phase not in (STARTING, RUNNING) or task.id in self._busy:
            return
        self._fail(task, "failed; storage quota exceeded")

    async def _check(self, task: TaskRecord) -> None:
        """
        Ask the check hook whether a running task still runs.
        """
        result = await self._hooks.runHook("check", task)
        if result.exitCode == ENDED:
            _log.info("Task {id} ended by itself", id=task.id)
            task.phase, task.stopAs = advance(task.phase, Step.STOP), "finished"
            self._commit()
        elif not result.ok:
            _log.warn(
                "Check hook for task {id} gave no answer ({outcome})",
                id=task.id, outcome=describeResult(result),
            )
