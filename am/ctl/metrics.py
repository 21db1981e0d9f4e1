# -*- test-case-name: tests.test_ctl_ops -*-
"""
The controller's Prometheus metrics: one registry per controller (never the
process-wide default, so two controllers in one process keep their own
counts), fed by

 - the site, once per finished request (L{Metrics.observeRequest}): face,
   route, method, status and latency; GENI method and C{geni_code}; bookings
   made or refused and node heartbeats, told apart by route and outcome;
 - a store wrapper (L{MeasuredStore}): transaction time and how many
   transactions are queued or running;
 - cheap reads at scrape time: nodes and current or future schedules by
   status, and the trust layer's cache hits.

C{/metrics} is served by L{MetricsResource}; who may read it is the
operator's choice (C{open}, C{proxy}: trusted proxies only, or C{off}).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from typing import Any, Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

METRICS_ACCESS = ("open", "proxy", "off")

# Where a request's path goes: the GENI face, the operator's endpoints, or REST.
_OPS_PATHS = {"health", "ready", "metrics"}

# Latency buckets in seconds: REST calls are milliseconds, a cold GENI
# ListResources or a big Allocate can take seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Far enough ahead to count every schedule still to come.
_FUTURE = 100 * 365 * 86400


def faceAndRoute(path: bytes) -> tuple[str, str]:
    """
    The face (C{rest}, C{geni} or C{ops}) and route of a request path,
    with variable segments folded (C{experiment}, not C{experiments/42}), so
    that labels stay few.
    """
    from rest_compat.resource import pathSegments, resolve

    raw = path.split(b"?", 1)[0].split(b"/")[1:]
    if raw and raw[0] == b"xmlrpc":
        return "geni", "xmlrpc/am"
    if len(raw) == 1 and raw[0].decode("ascii", "replace") in _OPS_PATHS:
        return "ops", raw[0].decode("ascii")
    segments = pathSegments(raw) if raw != [b""] else []
    match = resolve(segments) if segments else None
    if match is None:
        return "rest", "-" if segments else "/"
    return "rest", match[0]


class Metrics:
    """
    The instruments of one controller.
    """

    def __init__(self, registry: Optional[CollectorRegistry] = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "marvin_http_requests", "HTTP requests answered, by face, route, method and status.",
            ["face", "route", "method", "status"], registry=r,
        )
        self.latency = Histogram(
            "marvin_http_request_duration_seconds", "Time from dispatch to the end of the answer.",
            ["face", "route", "method"], buckets=_BUCKETS, registry=r,
        )
        self.geniCalls = Counter(
            "marvin_geni_calls", "GENI AM API calls, by method and geni_code.", ["method", "geni_code"], registry=r,
        )
        self.bookings = Counter(
            "marvin_bookings", "Booking requests (REST POST /experiments, GENI Allocate) by face and outcome.",
            ["face", "outcome"], registry=r,
        )
        self.heartbeats = Counter("marvin_heartbeats", "Node heartbeats accepted (REST PUT /resources/<id> by a node).", registry=r)
        self.nodes = Gauge("marvin_nodes", "Nodes by status (read at scrape time).", ["status"], registry=r)
        self.schedules = Gauge(
            "marvin_schedules", "Schedules whose window reaches now or later, by status (read at scrape time).",
            ["status"], registry=r,
        )
        self.storeSeconds = Histogram(
            "marvin_store_transaction_seconds", "Store transaction time, queueing included, by kind.",
            ["kind"], buckets=_BUCKETS, registry=r,
        )
        self.storeDepth = Gauge(
            "marvin_store_queue_depth", "Store transactions queued or running, by kind.", ["kind"], registry=r,
        )
        self.scrapeErrors = Counter(
            "marvin_metrics_refresh_errors", "Scrapes whose store reads failed (the gauges kept their last values).",
            registry=r,
        )
        self._caches: list[tuple[str, Callable[[], Any]]] = []
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r.register(_CacheCollector(self._caches))
        for kind in ("read", "write"):
            self.storeDepth.labels(kind=kind)
        for outcome in ("made", "refused"):
            for face in ("rest", "geni"):
                self.bookings.labels(face=face, outcome=outcome)

    def child(self, metric: Any, *values: str) -> Any:
        """
        C{metric.labels(*values)}, remembered: label sets are few, and
        C{labels} costs more than the count (only for metrics never cleared).
        """
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def watchCache(self, name: str, cache: Callable[[], Any]) -> None:
        """
        Report the hits and misses of the L{am.trust._lru.LRU} that
        C{cache()} returns (C{None} while there is none).
        """
        self._caches.append((name, cache))

    def observeRequest(self, request: Any, duration: float) -> None:
        """
        Count one finished request. The GENI face leaves the method and the
        answer's code on the request as C{geniCall}; a REST node heartbeat
        is a successful PUT on a resource by a caller the REST face marked
        as a node (C{marvinRole}).
        """
        route = getattr(request, "marvinRoute", None)
        if route is not None:
            face = "rest"  # the REST face routed it already
        else:
            face, route = faceAndRoute(getattr(request, "uri", b"") or b"")
        method = (getattr(request, "method", b"") or b"-").decode("ascii", "replace").upper()
        status = str(getattr(request, "code", 0) or 0)
        self.child(self.requests, face, route, method, status).inc()
        self.child(self.latency, face, route, method).observe(duration)
        ok = status.startswith("2")
        if face == "rest":
            if route == "experiments" and method == "POST" and status != "401":
                self.child(self.bookings, "rest", "made" if ok else "refused").inc()
            elif route == "resource" and method == "PUT" and ok and getattr(request, "marvinRole", None) == "node":
                self.heartbeats.inc()
        call = getattr(request, "geniCall", None)
        if face == "geni" and call is not None:
            geniMethod, code = call
            self.geniCalls.labels(method=geniMethod, geni_code=str(code)).inc()
            if geniMethod == "Allocate":
                self.bookings.labels(face="geni", outcome="made" if code == 0 else "refused").inc()

    def refresh(self, scheduler: Any) -> Deferred:
        """
        Read the nodes and current schedules by status into the gauges.
        """
        now = scheduler.now()

        def count(txn: Any) -> tuple[Tally, Tally]:
            nodes = Tally(node.status for node in txn.listNodes())
            schedules = Tally(s.status for s in txn.schedulesOverlapping(now, now + _FUTURE))
            return nodes, schedules

        def store(tallies: tuple[Tally, Tally]) -> None:
            for gauge, tally in zip((self.nodes, self.schedules), tallies):
                gauge.clear()
                for status, n in sorted(tally.items()):
                    gauge.labels(status=status).set(n)

        return scheduler.read(count).addCallback(store)

    def exposition(self) -> bytes:
        """
        The registry in the Prometheus text format.
        """
        return generate_latest(self.registry)


class _CacheCollector:
    """
    The trust caches' hit and miss counts, read when scraped.
    """

    def __init__(self, caches: list[tuple[str, Callable[[], Any]]]) -> None:
        self.caches = caches

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        hits = CounterMetricFamily("marvin_cache_hits", "Trust cache lookups that found an entry.", labels=["cache"])
        misses = CounterMetricFamily("marvin_cache_misses", "Trust cache lookups that did not.", labels=["cache"])
        for name, get in self.caches:
            cache = get()
            if cache is not None:
                hits.add_metric([name], cache.hits)
                misses.add_metric([name], cache.misses)
        yield hits
        yield misses


class MeasuredStore:
    """
    A store whose transactions are timed and counted while in flight; all
    else passes through. C{oldestWrite()} tells L{am.ctl.health} whether the
    writer is stuck.
    """

    def __init__(self, store: Any, metrics: Metrics, timer: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._metrics = metrics
        self._timer = timer
        self._writes: dict[int, float] = {}
        self._serial = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def oldestWrite(self) -> Optional[float]:
        """
        How long the oldest unfinished write has been waiting or running, or C{None}.
        """
        if not self._writes:
            return None
        return self._timer() - min(self._writes.values())

    def transact(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        return self._measure("write", self._store.transact, function, args, kwargs)

    def read(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        return self._measure("read", self._store.read, function, args, kwargs)

    def _measure(self, kind: str, run: Callable[..., Any], function: Any, args: tuple, kwargs: dict) -> Deferred:
        started = self._timer()
        self._serial += 1
        serial = self._serial
        if kind == "write":
            self._writes[serial] = started
        depth = self._metrics.child(self._metrics.storeDepth, kind)
        depth.inc()

        def done(result: Any) -> Any:
            depth.dec()
            self._writes.pop(serial, None)
            self._metrics.child(self._metrics.storeSeconds, kind).observe(self._timer() - started)
            return result

        return maybeDeferred(run, function, *args, **kwargs).addBoth(done)


class MetricsResource(Resource):
    """
    C{GET /metrics}: refreshes the scrape-time gauges, then answers the
    registry in the text format. C{access} is C{open} or C{proxy} (only
    peers among the trusted proxies; others get 404, as with C{off}).
    """

    isLeaf = True
    log = Logger()

    def __init__(self, metrics: Metrics, scheduler: Any, access: str, isTrustedPeer: Callable[[Any], bool]) -> None:
        super().__init__()
        self.metrics = metrics
        self.scheduler = scheduler
        self.access = access
        self.isTrustedPeer = isTrustedPeer

    def render_GET(self, request: Any) -> Any:
        if self.access == "off" or (self.access == "proxy" and not self.isTrustedPeer(request.getClientAddress())):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"application/json")
            return b'{"message": "Not found."}'

        def failed(failure: Any) -> None:
            self.metrics.scrapeErrors.inc()
            self.log.warn("metrics: cannot read the store: {why}", why=failure.getErrorMessage())

        def answer(_: Any) -> None:
            if request._disconnected:
                return
            data = self.metrics.exposition()
            request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
            request.setHeader(b"content-length", str(len(data)).encode("ascii"))
            request.write(data)
            request.finish()

        self.metrics.refresh(self.scheduler).addErrback(failed).addCallback(answer)
        return NOT_DONE_YET
