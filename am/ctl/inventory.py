# -*- test-case-name: tests.test_inventory -*-
"""
Where nodes come from: a static YAML file and/or an inventory REST API polled
in the background, both turned into C{{id, hostname, status, tags}} entries
for L{am.core.scheduler.Scheduler.applyInventory}.

The sync runs on the reactor's clock, never on a request path (the legacy
sync ran inside requests, for up to a minute). A source that fails, answers
garbage or answers nothing is logged and retried; the core never deletes
nodes, and a snapshot from a failed or partial source is applied as
incomplete, so no node is marked missing because the inventory hiccuped.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from am.ctl.httpbody import describeFailure, readBody
from am.ctl.oauth import OAuth2Settings, TokenSource
from am.core.interfaces import IScheduler
from am.ctl.inventorymap import (  # noqa: F401 (re-exported)
    Field,
    FieldMapping,
    InventoryError,
    entriesFromDocument,
    loadStaticInventory,
)



# -- the inventory REST API -----------------------------------------------------


@attrs.frozen
class InventoryAPI:
    """
    Where and how to poll an inventory REST API.

    @ivar token: the value of the C{tokenHeader} header (e.g. C{"Bearer ..."}), or C{None}.
    @ivar tokenFile: a file holding that value, read again for each request
        (so a token rotated on disk is used without a restart); wins over C{token}.
    @ivar oauth2: get short-lived bearer tokens by OAuth2 client credentials
        instead (sent as C{tokenHeader: Bearer <token>}).
    @ivar caFile: PEM roots for an inventory with a private CA; C{None} means
        the system's roots.
    """

    url: str
    mapping: FieldMapping
    listKey: Optional[str] = None
    tokenHeader: str = "Authorization"
    token: Optional[str] = None
    tokenFile: Optional[str] = None
    oauth2: Optional[OAuth2Settings] = None
    timeout: float = 60.0
    maxBytes: int = 64 * 1024 * 1024
    caFile: Optional[str] = None


class HTTPInventoryFetcher:
    """
    Fetch and decode one inventory answer with twisted.web's Agent.

    @ivar tokens: the OAuth2 token source, when the API wants one.
    """

    def __init__(self, reactor: Any, api: InventoryAPI, tokens: Optional[TokenSource] = None) -> None:
        from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

        self.reactor = reactor
        self.api = api
        policy = BrowserLikePolicyForHTTPS()
        if api.caFile is not None:
            from twisted.internet.ssl import Certificate, trustRootFromCertificates

            with open(api.caFile, "rb") as f:
                roots = [Certificate.loadPEM(f.read())]
            policy = BrowserLikePolicyForHTTPS(trustRoot=trustRootFromCertificates(roots))
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, contextFactory=policy, connectTimeout=api.timeout, pool=self.pool)
        if tokens is None and api.oauth2 is not None:
            tokens = TokenSource(reactor, api.oauth2)
        self.tokens = tokens

    def __call__(self) -> Deferred:
        """
        @return: a Deferred firing with the decoded JSON document, or failing
            with L{InventoryError} (or a connection error).
        """
        if self.tokens is None:
            try:
                value = self._staticToken()
            except InventoryError:
                return fail()
            return self._get(value)
        tokens = self.tokens

        def withToken(token: str, retry: bool) -> Deferred:
            def refused() -> Deferred:
                # The inventory no longer takes this token (revoked, or its
                # clock runs ahead of ours): one more try with a fresh one.
                tokens.invalidate(token)
                return tokens.token().addCallback(withToken, retry=False)

            return self._get(f"Bearer {token}", onUnauthorized=refused if retry else None)

        return tokens.token().addCallback(withToken, retry=True)

    def _staticToken(self) -> Optional[str]:
        if self.api.tokenFile is None:
            return self.api.token
        try:
            with open(self.api.tokenFile, "rb") as f:
                return f.read().decode("utf-8", "replace").strip()
        except OSError as e:
            raise InventoryError(f"cannot read the token file {self.api.tokenFile}: {e.strerror}") from None

    def _get(self, token: Optional[str], onUnauthorized: Optional[Callable[[], Deferred]] = None) -> Deferred:
        from twisted.web.http_headers import Headers

        headers = Headers({b"Accept": [b"application/json"], b"User-Agent": [b"marvinctld"]})
        if token is not None:
            headers.addRawHeader(self.api.tokenHeader.encode("ascii"), token.encode("utf-8"))
        d = self.agent.request(b"GET", self.api.url.encode("ascii"), headers)

        def gotResponse(response: Any) -> Deferred:
            finished = readBody(response, self.api.maxBytes)
            if response.code == 401 and onUnauthorized is not None:
                return finished.addBoth(lambda _: onUnauthorized())
            if response.code != 200:
                return finished.addBoth(
                    lambda _: fail(InventoryError(f"HTTP {response.code} {response.phrase.decode('latin-1')}"))
                )
            return finished.addCallback(decode)

        def decode(body: bytes) -> Any:
            try:
                return json.loads(body)
            except ValueError as e:
                raise InventoryError(f"answer is not JSON: {e}") from None

        def late(result: Any, timeout: float) -> Failure:
            return Failure(InventoryError(f"no answer in {timeout:g} s"))

        d.addCallback(gotResponse)
        d.addTimeout(self.api.timeout, self.reactor, onTimeoutCancel=late)
        return d


# -- the background sync -----------------------------------------------------------


class InventorySync:
    """
    Apply the configured sources on a period, and on demand (C{PUT /v1/backend/sync}).

    @ivar lastResult: the counts of the last applied snapshot.
    @ivar lastProblems: what went wrong in the last run (empty when all was well).
    @ivar leading: whether this controller runs the periodic sync now (only
        one of several sharing a database does; an admin's sync runs anywhere).
    """

    log = Logger()

    def __init__(
        self,
        scheduler: IScheduler,
        clock: IReactorTime,
        staticFile: Optional[str] = None,
        fetch: Optional[Callable[[], Deferred]] = None,
        api: Optional[InventoryAPI] = None,
        period: float = 3600.0,
        retry: float = 60.0,
    ) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.staticFile = staticFile
        self.fetch = fetch
        self.api = api
        self.period = period
        self.retry = min(retry, period)
        self.lastResult: Optional[dict[str, int]] = None
        self.lastProblems: list[str] = []
        self.lastSync: Optional[float] = None
        self._waiters: Optional[list[Deferred]] = None
        self._partial = False
        self._loop: Optional[LoopingCall] = None
        self.leading: Callable[[], bool] = lambda: True

    @property
    def configured(self) -> bool:
        return self.staticFile is not None or self.fetch is not None

    def start(self) -> Deferred:
        """
        Sync now, then every C{period}; after a failed run, retry after C{retry}.

        @return: a Deferred firing when the first run is over (it never fails).
        """
        if not self.configured or self._loop is not None:
            return succeed(None)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.period, now=True)
        if self._waiters is not None:
            first: Deferred = Deferred()
            self._waiters.append(first)
            return first
        return succeed(self.lastResult)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _tick(self) -> Deferred:
        if not self.leading():
            # Another controller on the database runs the periodic sync.
            return succeed(None)

        def reschedule(ok: bool) -> None:
            if self._loop is not None:
                self._loop.interval = self.period if ok else self.retry

        return self.syncNow().addCallback(lambda result: reschedule(result is not None and not self.lastProblems))

    def syncNow(self) -> Deferred:
        """
        Run one sync, or join the one under way.

        @return: a Deferred firing with the applied counts, or C{None} when no
            usable snapshot was obtained. It never fails.
        """
        waiter: Deferred = Deferred()
        if self._waiters is not None:
            self._waiters.append(waiter)
            return waiter
        self._waiters = [waiter]

        def done(result: Any) -> None:
            waiters, self._waiters = self._waiters or [], None
            for w in waiters:
                w.callback(result)

        self._sync().addBoth(done)
        return waiter

    def syncOrFail(self) -> Deferred:
        """
        L{syncNow} for an admin who asked for it (C{PUT /v1/backend/sync}):
        fails with L{InventoryError} saying what went wrong, if anything did.
        """

        def check(counts: Any) -> Any:
            if self.lastProblems:
                raise InventoryError("; ".join(self.lastProblems))
            return counts

        return self.syncNow().addCallback(check)

    def _gather(self) -> Deferred:
        sources = []
        if self.staticFile is not None:
            sources.append(("file " + self.staticFile, maybeDeferred(loadStaticInventory, self.staticFile)))
        if self.fetch is not None:
            label = "api " + (self.api.url if self.api is not None else "")

            def fromDocument(document: Any) -> list[dict[str, Any]]:
                assert self.api is not None
                entries, problems = entriesFromDocument(document, self.api.mapping, self.api.listKey)
                for problem in problems[:20]:
                    self.log.warn("inventory {source}: skipped: {problem}", source=label, problem=problem)
                if len(problems) > 20:
                    self.log.warn("inventory {source}: {n} more records skipped", source=label, n=len(problems) - 20)
                if problems:
                    # Applied, but not as a complete picture: a broken record
                    # must not turn its node into "missing".
                    self._partial = True
                return entries

            sources.append((label, maybeDeferred(self.fetch).addCallback(fromDocument)))
        return DeferredList([d for _, d in sources], consumeErrors=True).addCallback(
            lambda results: [(label, r) for (label, _), r in zip(sources, results)]
        )

    def _sync(self) -> Deferred:
        self._partial = False
        problems: list[str] = []

        def combine(results: list) -> Deferred:
            entries: dict[str, dict[str, Any]] = {}
            complete = not self._partial
            for label, (ok, value) in results:
                if not ok:
                    message = value.getErrorMessage() if value.check(InventoryError) else _describe(value)
                    problems.append(f"{label}: {message}")
                    complete = False
                    continue
                if not value:
                    problems.append(f"{label}: no nodes in the answer; nothing changed from it")
                    complete = False
                    continue
                for entry in value:
                    entries.setdefault(entry["id"], entry)
            for problem in problems:
                self.log.error("inventory {problem}; will retry", problem=problem)
            self.lastProblems = problems
            if not entries:
                return succeed(None)
            return self.scheduler.applyInventory(list(entries.values()), complete=complete)

        def applied(counts: Any) -> Any:
            if counts is not None:
                self.lastResult = counts
                self.lastSync = self.clock.seconds()
                self.log.info(
                    "inventory applied: {added} added, {updated} updated, {missing} now missing",
                    **counts,
                )
            return counts

        def failed(failure: Failure) -> None:
            self.log.failure("inventory could not be applied; will retry", failure)
            self.lastProblems = problems + [_describe(failure)]
            return None

        return self._gather().addCallback(combine).addCallbacks(applied, failed)


_describe = describeFailure
