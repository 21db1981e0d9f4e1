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
import os
import re
import sys
from typing import Any, Callable, Optional, Sequence

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from am.ctl.config import BootstrapUser, ConfigError, ControllerConfig, TLSListener, loadConfig
from am.ctl.logs import startLogging


class StartupError(Exception):
    """
    The controller cannot start (database, port); the message says why.
    """


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
        from am.ctl.logs import marvinVersion

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
            return loadConfig(self["config"], demo=self["demo"], demoDir=self["dir"])
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
    from am.trust.tls import serverTLSOptions

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    from am.trust.certs import certificatePEM, loadRoots

    roots = [read(p) for p in listener.clientCA]
    # GENI clearinghouse roots (files or gcf-style directories) may sign clients too.
    roots += [certificatePEM(c) for c in loadRoots(extraRoots)] if extraRoots else []
    return serverTLSOptions(read(listener.certificate), read(listener.key), roots)


def redacted(database: str) -> str:
    """
    A database location fit for a log line: no password from a URL.
    """
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", database)


class MarvinSite(Site):
    """
    A L{Site} without its own access log (each face logs one line per
    request, with the caller's identity) and without tracebacks in answers.
    Each request gets an id (answered as C{X-Request-Id}, logged by the
    faces) and, once finished, is counted by C{observer} with its duration.
    """

    displayTracebacks = False
    observer: Optional[Callable[[Any, float], None]] = None

    def getResourceFor(self, request: Any) -> Any:
        import secrets
        import time

        request.requestId = secrets.token_hex(6)
        request.startedAt = time.perf_counter()
        request.setHeader(b"x-request-id", request.requestId.encode("ascii"))
        return super().getResourceFor(request)

    def log(self, request: Any) -> None:
        import time

        started = getattr(request, "startedAt", None)
        if self.observer is not None and started is not None:
            self.observer(request, time.perf_counter() - started)


def defaultRESTFactory(scheduler: Any, config: ControllerConfig, sync: Optional[Callable[[], Deferred]]) -> Resource:
    """
    The MONROE REST resource over C{scheduler}, trusting identity headers only
    from the configured proxies.
    """
    from rest_compat.auth import Authenticator
    from rest_compat.resource import buildRESTResource

    authenticator = Authenticator(
        trustedProxies=list(config.trustedProxies),
        verifiedHeader=config.verifiedHeader,
        fingerprintHeader=config.fingerprintHeader,
    )
    return buildRESTResource(
        scheduler, authenticator, cors=list(config.corsOrigins) if config.corsOrigins else None, sync=sync
    )


# -- bootstrap users ----------------------------------------------------------------


def bootstrapUsers(scheduler: Any, users: tuple[BootstrapUser, ...]) -> Deferred:
    """
    Create each configured user whose fingerprint is not known yet, in one
    transaction, so a fresh install can be administered through the API.
    An existing user is left as it is (with a warning when its role differs).

    @return: a Deferred firing with the list of names created.
    """
    from am.core import accounts
    from am.core.errors import MarvinError

    log = Logger(namespace="marvinctld")
    now, policy = scheduler.now(), scheduler.policy

    def create(txn: Any) -> list[str]:
        created = []
        for user in users:
            known = txn.findUser(fingerprint=user.fingerprint)
            if known is not None:
                if known.role != user.role or known.invalid:
                    log.warn(
                        "bootstrap user {name}: fingerprint {fp} belongs to user {id} "
                        "({known}, role {role}{invalid}); left as it is",
                        name=user.name, fp=user.fingerprint, id=known.id, known=known.name,
                        role=known.role, invalid=", invalidated" if known.invalid else "",
                    )
                continue
            try:
                accounts.addUser(
                    txn, user.name, user.role, now, policy, fingerprint=user.fingerprint,
                    urn=user.urn, project=user.project,
                )
            except MarvinError as e:
                log.warn("bootstrap user {name} not created: {why}", name=user.name, why=e.message)
                continue
            created.append(user.name)
        return created

    def report(created: list[str]) -> list[str]:
        for name in created:
            log.info("bootstrap user {name} created", name=name)
        return created

    return scheduler.transact(create).addCallback(report)


# -- the service -------------------------------------------------------------------


def _openStore(path: str, reactor: Any) -> Any:
    if path.startswith(("postgresql://", "postgres://")):
        from am.store.postgres import PostgresStore

        return PostgresStore(path, reactor)
    from am.store.sqlite import SQLiteStore

    return SQLiteStore(path, reactor)


class Controller(MultiService):
    """
    The controller's service: opens the store, creates bootstrap users,
    listens, and runs the background loops; stops them all in reverse.

    @ivar ready: fires with the listening ports once the controller serves,
        or fails with L{StartupError}.
    @ivar root: the site's root, the REST resource (C{/version}, C{/v1/...});
        other faces mount on it with C{putChild} (the GENI face at C{xmlrpc}):
        each of C{faces} is called with the controller once C{scheduler},
        C{config} and C{root} exist and before anything listens.
    """

    log = Logger(namespace="marvinctld")

    def __init__(
        self,
        config: ControllerConfig,
        reactor: Any,
        restFactory: Callable[..., Resource] = defaultRESTFactory,
        storeFactory: Callable[[str, Any], Any] = _openStore,
        fetcherFactory: Optional[Callable[[Any, Any], Callable[[], Deferred]]] = None,
        faces: Sequence[Callable[["Controller"], None]] = (),
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.restFactory = restFactory
        self.storeFactory = storeFactory
        self.fetcherFactory = fetcherFactory
        self.faces = tuple(faces)
        self.store: Any = None
        self.scheduler: Any = None
        self.sync: Any = None
        self.site: Optional[Site] = None
        self.root: Optional[Resource] = None
        self.ports: list[Any] = []
        self.ready: Deferred = Deferred()
        self._expiry: Optional[LoopingCall] = None
        self.metrics: Any = None

    def startService(self) -> None:
        """
        @raise StartupError: if the database cannot be opened.
        """
        from am.ctl.inventory import HTTPInventoryFetcher, InventorySync
        from am.core.scheduler import Scheduler

        from am.ctl.metrics import MeasuredStore, Metrics

        try:
            store = self.storeFactory(self.config.database, self.reactor)
        except Exception as e:
            raise StartupError(f"database: cannot open {redacted(self.config.database)}: {e}") from None
        self.metrics = Metrics()
        self.store = MeasuredStore(store, self.metrics)
        super().startService()
        self.scheduler = Scheduler(self.store, self.reactor, self.config.policy)
        inventory = self.config.inventory
        fetch = None
        if inventory.api is not None:
            fetch = (self.fetcherFactory or HTTPInventoryFetcher)(self.reactor, inventory.api)
        self.sync = InventorySync(
            self.scheduler, self.reactor, staticFile=inventory.file, fetch=fetch, api=inventory.api,
            period=inventory.period, retry=inventory.retry,
        )
        if not self.sync.configured:
            self.log.warn("no inventory configured: nodes come only from the database")
        self.root = self.restFactory(self.scheduler, self.config, self.sync.syncOrFail if self.sync.configured else None)
        faces = list(self.faces)
        if self.config.geni is not None:
            from am.geni.face import mountGENI

            faces.append(mountGENI)
        from am.ctl.ops import mountOperations

        faces.append(mountOperations)
        for face in faces:
            face(self)
        from rest_compat.params import MAX_BODY, limitedRequestFactory

        # Bodies past the larger of the faces' limits are never stored; each
        # face answers in its own form (REST 413, GENI TOOBIG).
        geni = self.config.geni
        limit = max(MAX_BODY, geni.maxRequest if geni is not None else 0)
        self.site = MarvinSite(self.root, requestFactory=limitedRequestFactory(limit), reactor=self.reactor)
        self.site.noisy = False
        self.site.observer = self.metrics.observeRequest
        d = bootstrapUsers(self.scheduler, self.config.bootstrap)
        d.addCallback(lambda _: self._listen())
        d.addCallback(self._serving)
        d.addErrback(self._failed)

    def _endpoints(self) -> list[tuple[str, Any]]:
        from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint

        endpoints = []
        tls, http = self.config.tls, self.config.http
        if tls is not None:
            try:
                geni = self.config.geni
                options = tlsOptions(tls, geni.trustRoots if geni is not None else ())
            except Exception as e:
                raise StartupError(f"listen.tls: cannot set up TLS: {e}") from None
            endpoints.append(("https", SSL4ServerEndpoint(self.reactor, tls.port, options, interface=tls.address)))
        if http is not None:
            kind = TCP6ServerEndpoint if ipaddress.ip_address(http.address).version == 6 else TCP4ServerEndpoint
            endpoints.append(("http", kind(self.reactor, http.port, interface=http.address)))
        return endpoints

    def _listen(self) -> Deferred:
        """
        Listen on each endpoint in turn; ports that did open are kept in
        C{ports} (and closed by L{stopService}) even when a later one fails.
        """
        endpoints = self._endpoints()
        ports: list[Any] = []
        self.ports = ports

        def listenNext(_: Any = None) -> Any:
            if len(ports) == len(endpoints):
                return ports
            scheme, endpoint = endpoints[len(ports)]

            def cannot(failure: Failure) -> None:
                raise StartupError(f"cannot listen for {scheme}: {failure.getErrorMessage()}")

            return endpoint.listen(self.site).addCallbacks(ports.append, cannot).addCallback(listenNext)

        return maybeDeferred(listenNext)

    def _serving(self, ports: list[Any]) -> Any:
        if not self.running:
            for port in ports:
                port.stopListening()
            self.ports = []
            return ports
        for port, scheme in zip(ports, self._schemes()):
            host = port.getHost()
            self.log.info("listening for {scheme} on {host}:{port}", scheme=scheme, host=host.host, port=host.port)
        self._expiry = LoopingCall(self._expire)
        self._expiry.clock = self.reactor
        self._expiry.start(self.config.expiryPeriod, now=False)
        # Ready once the first inventory sync is over (whatever its outcome),
        # so that what the demo prints finds the nodes there.
        return self.sync.start().addCallback(lambda _: self.ready.callback(ports))

    def _schemes(self) -> list[str]:
        return [s for s, present in (("https", self.config.tls), ("http", self.config.http)) if present]

    def _failed(self, failure: Failure) -> None:
        if not failure.check(StartupError):
            failure = Failure(StartupError(f"start-up failed: {failure.getErrorMessage()}"))
        self.ready.errback(failure)

    def _expire(self) -> Deferred:
        def expired(count: Any) -> None:
            if count:
                self.log.info("{count} unprovisioned allocation(s) or queued task(s) expired", count=count)

        def failed(failure: Failure) -> None:
            self.log.failure("expiring allocations failed; will retry", failure)

        return self.scheduler.expireAllocations().addCallbacks(expired, failed)

    def portFor(self, scheme: str) -> Optional[int]:
        """
        The port number actually bound for C{https} or C{http} (useful with port 0).
        """
        for port, s in zip(self.ports, self._schemes()):
            if s == scheme:
                return port.getHost().port
        return None

    def stopService(self) -> Deferred:
        if self.sync is not None:
            self.sync.stop()
        if self._expiry is not None and self._expiry.running:
            self._expiry.stop()
        stopping = [maybeDeferred(port.stopListening) for port in self.ports]
        self.ports = []
        d = DeferredList(stopping + [maybeDeferred(super().stopService)], consumeErrors=True)

        def close(_: Any) -> Any:
            if self.store is not None:
                store, self.store = self.store, None
                return store.close()

        return d.addCallback(close)


# -- twistd plugin and console script ------------------------------------------------


def makeService(options: Options, reactor: Any = None) -> Controller:
    """
    The twistd plugin's service. A bad configuration exits with one message.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    try:
        config = options.loadConfig()
    except ConfigError as e:
        raise SystemExit(f"marvinctld: {e}") from None
    controller = Controller(config, reactor)

    def failed(failure: Failure) -> None:
        Controller.log.critical("marvinctld: {why}", why=failure.getErrorMessage())
        reactor.stop()

    controller.ready.addErrback(failed)
    return controller


def demoInstructions(controller: Controller) -> str:
    """
    What to paste into a shell to talk to the demo, with the real paths and ports.
    """
    config = controller.config
    assert config.demo is not None
    pki = config.demo.pki
    lines = [
        "",
        "Marvin demo controller is running.",
        f"  directory:  {config.demo.directory}",
        f"  database:   {config.database}",
        f"  inventory:  {config.inventory.file}",
    ]
    tlsPort = controller.portFor("https")
    if tlsPort is not None:
        base = f"https://localhost:{tlsPort}"

        def curl(who: str, rest: str) -> str:
            return (
                f"  curl --cacert {pki.certificate('ca')} --cert {pki.certificate(who)} "
                f"--key {pki.key(who)} {rest}"
            )

        lines += [
            f"  TLS (client certificate required): {base}/",
            "",
            "Who am I (as the demo user):",
            curl("user", f"{base}/v1/backend/auth"),
            "Nodes:",
            curl("user", f"{base}/v1/resources"),
            "Find a free slot for 2 nodes for 5 minutes:",
            curl("user", f"'{base}/v1/schedules/find?nodecount=2&duration=300'"),
            "Run an experiment on 2 nodes as soon as possible for 5 minutes:",
            curl(
                "user",
                "-H 'Content-Type: application/json' -d '{\"name\": \"hello\", \"script\": "
                "\"docker.io/library/hello-world\", \"nodecount\": 2, \"nodetypes\": \"type:testing\", "
                f"\"start\": 0, \"duration\": 300}}' {base}/v1/experiments",
            ),
            "Users (as the demo admin):",
            curl("admin", f"{base}/v1/users"),
            "Heartbeat (as node 1):",
            curl("node", f"-X PUT -d maintenance=0 {base}/v1/resources/1"),
        ]
    if tlsPort is not None and config.geni is not None:
        from am.devtools.demopki import prepareGeniDemo

        geni = prepareGeniDemo(pki.directory, os.path.join(config.demo.directory, "geni"), port=tlsPort)
        omni = f"omni -c {geni['omni_config']} -a marvin -V3"
        lines += [
            "",
            f"GENI AM API v3 (jFed, omni): {geni['url']}",
            "GetVersion with curl:",
            curl("user", "-H 'Content-Type: text/xml' -d '<?xml version=\"1.0\"?><methodCall>"
                 f"<methodName>GetVersion</methodName><params/></methodCall>' {geni['url']}"),
            f"omni (slice {geni['slice']}; credentials made for the demo user, valid a week):",
            f"  {omni} --usercredfile {geni['usercred']} getversion",
            f"  {omni} --usercredfile {geni['usercred']} listresources",
            f"  {omni} --slicecredfile {geni['slicecred']} allocate demo {geni['rspec']}",
            f"  {omni} --slicecredfile {geni['slicecred']} provision demo",
            f"  {omni} --slicecredfile {geni['slicecred']} status demo",
            f"  {omni} --slicecredfile {geni['slicecred']} delete demo",
        ]
    httpPort = controller.portFor("http")
    if httpPort is not None:
        host = config.http.address if config.http is not None else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        lines += [
            "",
            f"Plain HTTP for a TLS proxy on loopback: http://{host}:{httpPort}/ -- the proxy",
            f"verifies the client certificate and passes {config.verifiedHeader} and {config.fingerprintHeader};",
            "what nginx would send for the demo user:",
            f"  curl -H '{config.verifiedHeader}: SUCCESS' -H '{config.fingerprintHeader}: "
            f"{pki.fingerprints['user']}' http://{host}:{httpPort}/v1/backend/auth",
        ]
    lines.append("")
    return "\n".join(lines)


def _missingControllerDependencies() -> list[str]:
    import importlib.util

    return [name for name in ("lxml", "xmlsec") if importlib.util.find_spec(name) is None]


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
    try:
        config = options.loadConfig()
    except ConfigError as e:
        sys.stderr.write(f"marvinctld: {e}\n")
        raise SystemExit(2)

    missing = _missingControllerDependencies()
    if missing:
        sys.stderr.write(
            f"marvinctld: {', '.join(missing)} not installed: the controller needs "
            "pip install 'marvin[controller]' (the plain install is the node agent's)\n"
        )
        raise SystemExit(1)

    from twisted.internet import reactor

    startLogging(config.log)
    controller = Controller(config, reactor)
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
