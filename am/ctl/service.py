# -*- test-case-name: tests.test_ctl_service -*-
"""
marvinctld, the controller: one reactor, one store, one scheduling core, and
one L{Site} serving the REST face (the GENI face mounts at C{/xmlrpc}) on a
TLS listener that requires client certificates and, optionally, a plain
listener on loopback for a TLS-terminating proxy. Inventory sync and the
expiry of unprovisioned allocations run in the background on the reactor's
clock.

Run it as C{marvinctld --config PATH}, C{marvinctld --demo [--dir DIR]}, or
as the twistd plugin C{twistd -n marvinctld --config PATH}.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from typing import Any, Callable, Optional, Sequence

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource

from am.core.accounts import Bootstrap
from am.core.interfaces import IScheduler
from am.core.scheduler import Scheduler
from am.ctl import housekeeping
from am.ctl.config import BootstrapUser, ConfigError, ControllerConfig, TLSListener, loadConfig
from am.ctl.housekeeping import LeaderLoop
from am.ctl.demo import addDemoAgents, demoInstructions, prepareDemo
from am.ctl.inventory import HTTPInventoryFetcher, InventorySync
from am.ctl.logs import marvinVersion, startLogging
from am.ctl.metrics import MeasuredStore, Metrics
from am.ctl.ops import mountOperations
from am.ctl.notifier import Notifier
from am.ctl.parts import IStartingService, InventoryService, Listener, StartupError
from am.ctl.resultsconfig import makeHub
from am.ctl.sharedport import AdoptedEndpoint, SharedEndpoint
from am.ctl.site import MarvinSite, makeSite
from am.ctl.slowclients import guard
from am.geni.face import mountGENI
from am.store.leadership import AlwaysLeader, Follower, ILeadership, leadershipOf
from am.store.sharedfile import bumpOnUserChange
from am.store.sqlite import SQLiteStore
from am.trust.certs import certificatePEM, loadRoots
from am.trust.tls import serverTLSOptions
from rest_compat.auth import Authenticator
from rest_compat.params import MAX_BODY
from rest_compat.resource import buildRESTResource

__all__ = [
    "Controller", "MarvinSite", "Options", "StartupError", "bootstrapUsers", "demoInstructions",
    "main", "makeController", "makeService", "redacted", "startLogging", "tlsOptions",
]


class Options(usage.Options):
    """
    Command line of C{marvinctld} and of the twistd plugin.
    """

    synopsis = "marvinctld (--config PATH | --demo [--dir DIR])"
    longdesc = (
        "The Marvin controller: the MONROE REST API and the GENI AM API over one "
        "scheduling core. --demo runs on embedded defaults in DIR (default "
        "./marvin-demo), making a development CA and certificates on first start."
    )
    optFlags = [["demo", None, "Run on the demo defaults (SQLite, development CA) in --dir."]]
    optParameters = [
        ["config", "c", None, "Path of the YAML configuration (see files/etc/marvinctld.conf)."],
        ["dir", "d", None, "Directory of the demo's database, certificates and inventory."],
    ]

    def opt_version(self) -> None:
        """
        Print Marvin's version and exit.
        """
        sys.stdout.write(f"marvinctld (Marvin) {marvinVersion()}\n")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self["config"] is None and not self["demo"]:
            raise usage.UsageError("give --config PATH, or --demo for the quick start")
        if self["dir"] is not None and not self["demo"] and self["config"] is None:
            raise usage.UsageError("--dir only goes with --demo")

    def loadConfig(self) -> ControllerConfig:
        """
        @raise ConfigError: naming the file and the problem.
        """
        try:
            return loadConfig(self["config"], demo=self["demo"], demoDir=self["dir"], prepareDemo=prepareDemo)
        except ConfigError as e:
            if self["config"] is not None and not str(e).startswith(self["config"]):
                raise ConfigError(f"{self['config']}: {e}") from None
            raise


# -- TLS and the site -----------------------------------------------------------


def tlsOptions(listener: TLSListener, extraRoots: Sequence[str] = ()) -> Any:
    """
    Server TLS options that require a client certificate issued by one of the
    configured client CAs and nothing else: C{trustRoot} holds only those
    roots (never the system store), so OpenSSL refuses a handshake without a
    certificate. The same listener serves the GENI face, so the options come
    from L{am.trust.tls}.
    """

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    roots = [read(p) for p in listener.clientCA]
    # GENI clearinghouse roots (files or gcf-style directories) may sign clients too.
    roots += [certificatePEM(c) for c in loadRoots(extraRoots)] if extraRoots else []
    return serverTLSOptions(read(listener.certificate), read(listener.key), roots)


def redacted(database: str) -> str:
    """
    A database location fit for a log line: no password from a URL.
    """
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", database)


def defaultRESTFactory(
    scheduler: IScheduler, config: ControllerConfig, sync: Optional[Callable[[], Deferred]], results: Any = None,
    callersVersion: Optional[Callable[[], Optional[int]]] = None,
) -> IResource:
    """
    The MONROE REST resource over C{scheduler}, trusting identity headers only
    from the configured proxies; C{callersVersion}: the user-change counter
    of processes sharing a SQLite file (L{am.store.sharedfile}) or of
    controllers sharing a PostgreSQL database (L{am.store.pgusers}).
    """
    authenticator = Authenticator(
        trustedProxies=list(config.trustedProxies),
        verifiedHeader=config.verifiedHeader,
        fingerprintHeader=config.fingerprintHeader,
    )
    return buildRESTResource(
        scheduler, authenticator, cors=list(config.corsOrigins) if config.corsOrigins else None, sync=sync,
        results=results,
        # Other controllers (PostgreSQL) or workers may change users: only a
        # controller alone on its database, or one following a user-change
        # counter (docs/sqlite.md, docs/postgresql.md), remembers callers.
        rememberCallers=callersVersion is not None or (not isPostgreSQL(config.database) and config.workers == 1),
        callersVersion=callersVersion,
    )


# -- bootstrap users ----------------------------------------------------------------


def bootstrapUsers(scheduler: IScheduler, users: tuple[BootstrapUser, ...]) -> Deferred:
    """
    Make each configured user exist as configured, in one transaction: the
    configuration is authoritative at start-up, so a user whose fingerprint
    is unknown is created, and one that was invalidated or given another role
    is restored (with a warning), so an operator locked out can restart.

    @return: a Deferred firing with the list of names created or restored.
    """
    log = Logger(namespace="marvinctld")
    specs = [
        {"name": u.name, "role": u.role, "fingerprint": u.fingerprint, "urn": u.urn, "project": u.project}
        for u in users
    ]

    def report(outcomes: list[Bootstrap]) -> list[str]:
        for outcome in outcomes:
            if outcome.created:
                log.info("bootstrap user {name} created", name=outcome.name)
            elif outcome.note:
                log.warn("bootstrap user {name}: {note}", name=outcome.name, note=outcome.note)
        return [o.name for o in outcomes if o.created or o.restored]

    return scheduler.bootstrapUsers(specs).addCallback(report)


# -- the service -------------------------------------------------------------------


def isPostgreSQL(database: str) -> bool:
    """
    Whether C{database} names a PostgreSQL database (which several controllers may share).
    """
    return database.startswith(("postgresql://", "postgres://"))


def openStore(database: str, reactor: Any, synchronous: str = "full", shared: bool = False) -> Any:
    """
    The store for C{database}: a C{postgresql://} URL or a SQLite file
    (opened with C{PRAGMA synchronous} at C{synchronous}; C{shared} by
    several worker processes, L{am.ctl.workers}).
    """
    if isPostgreSQL(database):
        # Imported here only because psycopg is an optional extra ("postgres").
        from am.store.pgstore import PostgresStore

        return PostgresStore(database, reactor)
    return SQLiteStore(database, reactor, synchronous, shared=shared)


class Controller(MultiService):
    """
    The controller: a L{MultiService} of a L{Listener} per configured port
    (C{https}, C{http}) serving one L{MarvinSite}, the background passes
    (L{am.ctl.housekeeping.LeaderLoop}s named C{expiry}, C{sweep}, C{heal},
    C{notifications-prune} and C{results}) and an L{InventoryService} named C{inventory} (these run
    only while this controller leads, L{am.store.leadership}); add more children with
    C{addService} (they start after the listeners, in the order added).

    Starting opens the store, builds the scheduler and the site's resources
    (the REST face, then each of C{faces}), creates the bootstrap users, and
    only then starts the children in order; stopping stops the started ones
    in reverse and closes the store.

    @ivar ready: fires with the listening ports once the controller serves
        (every child started, the first inventory sync over), or fails with
        L{StartupError}.
    @ivar root: the site's root, the REST resource (C{/version}, C{/v1/...});
        other faces mount on it with C{putChild} (the GENI face at C{xmlrpc}):
        each of C{faces} is called with the controller once C{scheduler},
        C{config} and C{root} exist and before anything listens.
    @ivar site: the one site every listener serves.
    @ivar sync: the inventory sync (its scheduler arrives when the store opens).
    @ivar worker: 0 for the main process; a worker (L{am.ctl.workers}, 1...)
        listens on the sockets C{inherited} names (scheme: descriptor), never
        leads, creates no bootstrap user and delivers no notification.
    """

    log = Logger(namespace="marvinctld")

    def __init__(
        self,
        config: ControllerConfig,
        reactor: Any,
        restFactory: Callable[..., IResource] = defaultRESTFactory,
        storeFactory: Optional[Callable[[str, Any], Any]] = None,
        fetcherFactory: Optional[Callable[[Any, Any], Callable[[], Deferred]]] = None,
        faces: Sequence[Callable[["Controller"], None]] = (),
        worker: int = 0,
        inherited: Optional[dict[str, int]] = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.restFactory = restFactory
        self.worker = worker
        self.inherited = inherited
        self.storeFactory = storeFactory or (
            lambda database, reactor: openStore(database, reactor, config.sqliteSynchronous, config.workers > 1)
        )
        # The operator's endpoints (/health, /ready, /metrics) mount last.
        self.faces = tuple(faces) + ((mountGENI,) if config.geni is not None else ()) + (mountOperations,)
        self.metrics = Metrics()
        self.store: Any = None
        self.leadership: ILeadership = AlwaysLeader()
        # PostgreSQL: user changes by any controller (am/store/pgusers.py);
        # usersVersion is what the faces' remembered users follow, if any.
        self.userChanges: Any = None
        self.usersVersion: Optional[Callable[[], Optional[int]]] = None
        self.scheduler: Optional[IScheduler] = None
        self.root: Optional[IResource] = None
        self.ready: Deferred = Deferred()
        # Bodies past the larger of the faces' limits are never stored; each
        # face answers in its own form (REST 413, GENI TOOBIG).
        limits = [MAX_BODY] + ([config.geni.maxRequest] if config.geni is not None else [])
        self.site: MarvinSite = makeSite(Resource(), limits, reactor)
        self.site.observer = self.metrics.observeRequest
        inventory = config.inventory
        fetch = None
        if inventory.api is not None:
            fetch = (fetcherFactory or HTTPInventoryFetcher)(reactor, inventory.api)
        self.sync = InventorySync(
            None, reactor, staticFile=inventory.file, fetch=fetch, api=inventory.api,
            period=inventory.period, retry=inventory.retry,
        )
        for scheme, makeEndpoint in self._endpoints():
            # Slow or greedy clients: a deadline on reading each request and a
            # cap on connections per peer address (on the plain listener the
            # trusted proxies are exempt: their clients share their address).
            exempt = config.trustedProxies if scheme == "http" else ()
            self.addService(Listener(scheme, makeEndpoint, guard(self.site, config.clientLimits, exempt)))  # type: ignore[arg-type]
        # The background passes, on the leading controller only.
        leading = lambda: self.leadership.leading  # noqa: E731
        scheduler = lambda: self.scheduler  # noqa: E731
        for name, period, run, what in (
            ("expiry", config.expiryPeriod, lambda: housekeeping.expire(scheduler()), "expiring allocations"),
            ("sweep", config.sweepPeriod, lambda: housekeeping.sweep(scheduler()), "sweep"),
            ("heal", config.healPeriod, lambda: housekeeping.heal(scheduler()), "heal"),
        ):
            self.addService(LeaderLoop(name, period, reactor, leading, run, what))
        self.addService(InventoryService(self.sync))
        if config.notifier.deliver and not worker:
            self.addService(Notifier(lambda: self.scheduler, reactor, config.notifier))
        keep = config.notifier.keep
        if keep:
            self.addService(LeaderLoop(
                "notifications-prune", housekeeping.prunePeriod(keep), reactor, leading,
                lambda: housekeeping.pruneNotifications(scheduler(), keep), "pruning notifications",
            ))
        # Results (docs/results.md): the spool and store, and the pass that
        # closes upload windows (refunding unused storage) and applies retention.
        self.results = makeHub(config.results, reactor)
        if self.results is not None:
            self.addService(LeaderLoop(
                "results", config.results.period, reactor, leading,
                lambda: housekeeping.results(scheduler(), self.results), "results housekeeping",
            ))

    def _endpoints(self) -> list[tuple[str, Callable[[], IStreamServerEndpoint]]]:
        endpoints: list[tuple[str, Callable[[], IStreamServerEndpoint]]] = []
        tls, http = self.config.tls, self.config.http
        if self.inherited is not None:
            return [(scheme, self._adopted(scheme, fd)) for scheme, fd in sorted(self.inherited.items(), reverse=True)]
        if tls is not None:

            def secure() -> IStreamServerEndpoint:
                try:
                    geni = self.config.geni
                    options = tlsOptions(tls, geni.trustRoots if geni is not None else ())
                except Exception as e:
                    raise StartupError(f"listen.tls: cannot set up TLS: {e}") from None
                if self.config.workers > 1:
                    return SharedEndpoint(self.reactor, tls.port, tls.address, options)
                return SSL4ServerEndpoint(self.reactor, tls.port, options, interface=tls.address)

            endpoints.append(("https", secure))
        if http is not None and self.config.workers > 1:
            # The workers accept from these sockets too (am/ctl/sharedport.py).
            endpoints.append(("http", lambda: SharedEndpoint(self.reactor, http.port, http.address)))
        elif http is not None:
            kind = TCP6ServerEndpoint if ipaddress.ip_address(http.address).version == 6 else TCP4ServerEndpoint
            endpoints.append(("http", lambda: kind(self.reactor, http.port, interface=http.address)))
        return endpoints

    def _adopted(self, scheme: str, fd: int) -> Callable[[], IStreamServerEndpoint]:
        def adopted() -> IStreamServerEndpoint:
            tls, geni = self.config.tls, self.config.geni
            if scheme == "https" and tls is not None:
                options = tlsOptions(tls, geni.trustRoots if geni is not None else ())
                return AdoptedEndpoint(self.reactor, fd, options)
            return AdoptedEndpoint(self.reactor, fd)

        return adopted

    def listeners(self) -> list[Listener]:
        """
        The listener services, in the order they start.
        """
        return [s for s in self if isinstance(s, Listener)]

    @property
    def ports(self) -> list[Any]:
        """
        The ports listening now (a port that did open stays here until the
        controller stops, even when a later one failed).
        """
        return [listener.port for listener in self.listeners() if listener.port is not None]

    def portFor(self, scheme: str) -> Optional[int]:
        """
        The port number actually bound for C{https} or C{http} (useful with port 0).
        """
        for listener in self.listeners():
            if listener.name == scheme and listener.port is not None:
                return listener.port.getHost().port  # type: ignore[attr-defined]
        return None

    def privilegedStartService(self) -> None:
        # Nothing binds before the store is open and the bootstrap users
        # exist: the children start from startService, in order.
        Service.privilegedStartService(self)

    def startService(self) -> None:
        """
        @raise StartupError: if the database cannot be opened.
        """
        try:
            store = self.storeFactory(self.config.database, self.reactor)
            self.store = MeasuredStore(store, self.metrics)
        except Exception as e:
            raise StartupError(f"database: cannot open {redacted(self.config.database)}: {e}") from None
        # Several controllers on one database run the background loops on one.
        self.leadership = Follower() if self.worker else leadershipOf(store)
        self.leadership.start()
        self.sync.leading = lambda: self.leadership.leading
        Service.startService(self)
        self.scheduler = Scheduler(self.store, self.reactor, self.config.policy)
        self.sync.scheduler = self.scheduler
        if not self.sync.configured:
            self.log.warn("no inventory configured: nodes come only from the database")
        extra = {}
        counter = getattr(store, "usersVersion", None) if self.config.workers > 1 else None
        if counter is not None:
            # Every worker's user changes bump it; every worker's face follows it.
            self.scheduler.events.subscribeInTransaction(bumpOnUserChange(counter))
            extra["callersVersion"] = counter.value
        elif hasattr(store, "userChanges"):
            # PostgreSQL: every controller's user changes, heard by notification.
            self.userChanges = store.userChanges()
            self.userChanges.start()
            extra["callersVersion"] = self.usersVersion = self.userChanges.version
        self.root = self.restFactory(
            self.scheduler, self.config, self.sync.syncOrFail if self.sync.configured else None, self.results,
            **extra,
        )
        for face in self.faces:
            face(self)
        self.site.resource = self.root
        # The main process made the bootstrap users before it started workers.
        d = bootstrapUsers(self.scheduler, () if self.worker else self.config.bootstrap)
        d.addCallback(lambda _: Deferred.fromCoroutine(self._startChildren()))
        d.addErrback(self._failed)

    async def _startChildren(self) -> None:
        """
        Start the listeners one by one, then every other child; C{ready}
        fires once all are started.
        """
        listeners = self.listeners()
        ports = []
        for listener in listeners:
            if not self.running:
                return
            listener.startService()
            ports.append(await listener.whenStarted())
        if not self.running:
            return
        for listener in listeners:
            host = listener.port.getHost()
            self.log.info(
                "listening for {scheme} on {host}:{port}",
                scheme=listener.name, host=host.host, port=host.port,  # type: ignore[attr-defined]
            )
        waiting = []
        for service in self:
            if not isinstance(service, Listener):
                service.startService()
                if IStartingService.providedBy(service):
                    waiting.append(service.whenStarted())
        for started in waiting:
            await started
        self.ready.callback(ports)

    def _failed(self, failure: Failure) -> None:
        if not failure.check(StartupError):
            failure = Failure(StartupError(f"start-up failed: {failure.getErrorMessage()}"))
        self.ready.errback(failure)

    def stopService(self) -> Deferred:
        """
        Stop the started children in reverse order, then close the store.
        """
        Service.stopService(self)
        started = [s for s in reversed(list(self)) if s.running]
        d = DeferredList([maybeDeferred(s.stopService) for s in started], consumeErrors=True)

        def close(_: Any) -> Any:
            self.leadership.stop()
            if self.userChanges is not None:
                self.userChanges.stop()
            if self.store is not None:
                store, self.store = self.store, None
                return store.close()

        return d.addCallback(close)


# -- twistd plugin and console script ------------------------------------------------


def makeController(options: Options, reactor: Any) -> Controller:
    """
    The controller the command line asks for: its configuration loaded and
    its services assembled. Shared by L{makeService} (twistd) and L{main}.

    @raise ConfigError: naming the file and the problem.
    """
    controller = Controller(options.loadConfig(), reactor)
    if controller.config.demo is not None:
        addDemoAgents(controller)
    if controller.config.workers > 1:
        # Here: am.ctl.workers builds on this module.
        from am.ctl.workers import Workers, markWorker, workerArguments

        markWorker(controller.metrics, 0)
        controller.addService(Workers(controller, controller.config.workers, workerArguments(options)))
    return controller


def makeService(options: Options, reactor: Any = None) -> Controller:
    """
    The twistd plugin's service. A bad configuration exits with one message;
    a failed start-up is logged as critical and stops the reactor.
    """
    if reactor is None:
        # Not at module level: twistd must install its reactor first.
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    try:
        controller = makeController(options, reactor)
    except ConfigError as e:
        raise SystemExit(f"marvinctld: {e}") from None

    def failed(failure: Failure) -> None:
        Controller.log.critical("marvinctld: {why}", why=failure.getErrorMessage())
        reactor.stop()

    controller.ready.addErrback(failed)
    return controller


def main(argv: Optional[list[str]] = None) -> None:
    """
    The C{marvinctld} console script. Exits 2 on a bad command line or
    configuration, 1 when start-up fails, 0 after a clean stop.
    """
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        sys.stderr.write(f"marvinctld: {e}\n{options.getUsage()}")
        raise SystemExit(2)
    from twisted.internet import reactor

    try:
        controller = makeController(options, reactor)
    except ConfigError as e:
        sys.stderr.write(f"marvinctld: {e}\n")
        raise SystemExit(2)
    config = controller.config
    startLogging(config.log, worker=0 if config.workers > 1 else None)
    outcome = {"code": 0}

    def failed(failure: Failure) -> None:
        message = failure.getErrorMessage() if failure.check(StartupError) else failure.getTraceback()
        if config.demo is not None and "cannot listen" in message:
            message += (
                " (to use other ports, run --config with a file holding 'demo: true' and "
                "'listen: {tls: {port: N}, http: {port: M}}')"
            )
        sys.stderr.write(f"marvinctld: {message}\n")
        outcome["code"] = 1
        if reactor.running:
            reactor.stop()

    def serving(ports: Any) -> None:
        if config.demo is not None:
            sys.stdout.write(demoInstructions(controller) + "\n")
            sys.stdout.flush()

    try:
        controller.startService()
    except StartupError as e:
        sys.stderr.write(f"marvinctld: {e}\n")
        raise SystemExit(1)
    controller.ready.addCallbacks(serving, failed)
    reactor.addSystemEventTrigger("before", "shutdown", controller.stopService)
    reactor.run()
    raise SystemExit(outcome["code"])


if __name__ == "__main__":
    main()
