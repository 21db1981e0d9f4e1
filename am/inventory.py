# -*- test-case-name: tests.test_inventory -*-
"""
Where nodes come from: a static YAML file and/or an inventory REST API polled
in the background, both turned into C{{id, hostname, status, tags}} entries
for L{am.scheduler.Scheduler.applyInventory}.

The sync runs on the reactor's clock, never on a request path (the legacy
sync ran inside requests, for up to a minute). A source that fails, answers
garbage or answers nothing is logged and retried; the core never deletes
nodes, and a snapshot from a failed or partial source is applied as
incomplete, so no node is marked missing because the inventory hiccuped.
"""

from __future__ import annotations

import json
import string
from typing import Any, Callable, Mapping, Optional

import attrs
import yaml
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from am.model import NODE_ACTIVE, NODE_STATUSES

_MISSING = object()


class InventoryError(Exception):
    """
    An inventory source could not be read or made no sense; the message says why.
    """


# -- field mapping -------------------------------------------------------------


def _lookup(record: Any, path: str) -> Any:
    """
    Follow a dotted path (C{location.country}, C{items.0}) into a JSON value.
    """
    value = record
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING or value is None:
            return _MISSING
    return value


@attrs.frozen
class Field:
    """
    How to get one value out of an inventory record.

    Written in the configuration as:
      - C{"name"} or C{"a.b"}: that (dotted) field;
      - C{[spec, spec, ...]}: the first alternative that is present;
      - C{{field: spec, map: {...}, pick: first|last, default: x}}: translate
        the value through C{map}; when the value is a list (say, a router's
        C{allTags}), the keys of C{map} present in it are candidates in the
        order C{map} lists them, and C{pick} chooses the first or the last;
      - C{{template: "{streetName} - {countryName}"}}: fill in fields (absent
        if any is missing);
      - C{{value: x}}: a constant.
    """

    paths: tuple[str, ...] = ()
    alternatives: tuple["Field", ...] = ()
    inner: Optional["Field"] = None
    mapping: Optional[tuple[tuple[str, Any], ...]] = None
    pickLast: bool = False
    default: Any = None
    template: Optional[str] = None
    constant: Any = None
    isConstant: bool = False

    @classmethod
    def fromConfig(cls, spec: Any, where: str) -> "Field":
        """
        @raise ValueError: naming C{where} and what is wrong.
        """
        if isinstance(spec, str) and spec.strip():
            return cls(paths=(spec.strip(),))
        if isinstance(spec, list) and spec:
            return cls(alternatives=tuple(cls.fromConfig(s, f"{where}[{i}]") for i, s in enumerate(spec)))
        if isinstance(spec, dict):
            keys = set(spec)
            if keys == {"value"}:
                return cls(constant=spec["value"], isConstant=True)
            if keys == {"template"}:
                text = spec["template"]
                if not isinstance(text, str):
                    raise ValueError(f"{where}.template: must be a string")
                try:
                    names = [n for _, n, _, _ in string.Formatter().parse(text) if n is not None]
                except ValueError as e:
                    raise ValueError(f"{where}.template: {e}") from None
                if not names or any(not n for n in names):
                    raise ValueError(f"{where}.template: name each field, as in '{{streetName}}'")
                return cls(template=text)
            unknown = keys - {"field", "map", "pick", "default"}
            if unknown or "field" not in keys:
                raise ValueError(
                    f"{where}: a mapping needs 'field' and may have 'map', 'pick', 'default'"
                    + (f" (unknown: {', '.join(sorted(map(str, unknown)))})" if unknown else "")
                )
            mapping = spec.get("map")
            if mapping is not None and not isinstance(mapping, dict):
                raise ValueError(f"{where}.map: must be a mapping of inventory value to value")
            pick = spec.get("pick", "first")
            if pick not in ("first", "last"):
                raise ValueError(f"{where}.pick: must be 'first' or 'last'")
            return cls(
                inner=cls.fromConfig(spec["field"], f"{where}.field"),
                mapping=None if mapping is None else tuple((str(k), v) for k, v in mapping.items()),
                pickLast=pick == "last",
                default=spec.get("default"),
            )
        raise ValueError(f"{where}: must be a field name, a list of alternatives or a mapping")

    def extract(self, record: Any) -> Any:
        """
        The value for C{record}, or C{None} when absent.
        """
        if self.isConstant:
            return self.constant
        if self.paths:
            value = _lookup(record, self.paths[0])
            return None if value is _MISSING else value
        if self.alternatives:
            for alternative in self.alternatives:
                value = alternative.extract(record)
                if value is not None and value != "":
                    return value
            return None
        if self.template is not None:
            values = {}
            for _, name, _, _ in string.Formatter().parse(self.template):
                if name is None:
                    continue
                value = _lookup(record, name)
                if isinstance(value, str):
                    value = value.strip()
                if value is _MISSING or value == "":
                    return None
                values[name] = value
            return self.template.format_map(values)
        assert self.inner is not None
        value = self.inner.extract(record)
        if self.mapping is None:
            return self.default if value is None else value
        table = dict(self.mapping)
        if isinstance(value, list):
            present = {str(v) for v in value}
            candidates = [k for k, _ in self.mapping if k in present]
            if not candidates:
                return self.default
            return table[candidates[-1] if self.pickLast else candidates[0]]
        if value is None:
            return self.default
        return table.get(str(value), self.default)


@attrs.frozen
class FieldMapping:
    """
    How an inventory API's records become inventory entries: a L{Field} for
    the node id, hostname and status, one per tag, and whether tag values are
    trimmed and lower-cased (the legacy Nimbus2 sync did).
    """

    id: Field
    hostname: Field
    status: Optional[Field] = None
    tags: tuple[tuple[str, Field], ...] = ()
    lowercaseTags: bool = False

    @classmethod
    def fromConfig(cls, config: Any, where: str = "fields") -> "FieldMapping":
        """
        @raise ValueError: naming the key and what is wrong.
        """
        config = {} if config is None else config
        if not isinstance(config, dict):
            raise ValueError(f"{where}: must be a mapping")
        unknown = set(config) - {"id", "hostname", "status", "tags", "lowercase_tags"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
        tags = config.get("tags") or {}
        if not isinstance(tags, dict):
            raise ValueError(f"{where}.tags: must be a mapping of tag name to field")
        lowercase = config.get("lowercase_tags", False)
        if not isinstance(lowercase, bool):
            raise ValueError(f"{where}.lowercase_tags: must be true or false")
        status = config.get("status")
        return cls(
            id=Field.fromConfig(config.get("id", "id"), f"{where}.id"),
            hostname=Field.fromConfig(config.get("hostname", "hostname"), f"{where}.hostname"),
            status=None if status is None else Field.fromConfig(status, f"{where}.status"),
            tags=tuple((str(t), Field.fromConfig(s, f"{where}.tags.{t}")) for t, s in tags.items()),
            lowercaseTags=lowercase,
        )

    def entry(self, record: Any) -> dict[str, Any]:
        """
        One inventory entry for L{am.scheduler.Scheduler.applyInventory}.

        @raise InventoryError: if the record has no usable id.
        """
        nodeid = self.id.extract(record)
        if isinstance(nodeid, bool) or not isinstance(nodeid, (str, int)) or not str(nodeid).strip():
            raise InventoryError(f"record without a usable id: {_short(record)}")
        status = self.status.extract(record) if self.status is not None else NODE_ACTIVE
        if status not in NODE_STATUSES:
            raise InventoryError(
                f"node {nodeid}: status {status!r} is not one of {', '.join(NODE_STATUSES)}"
            )
        hostname = self.hostname.extract(record)
        tags = {}
        for tag, field in self.tags:
            value = field.extract(record)
            if value is None or isinstance(value, (dict, list)):
                continue
            text = str(value)
            if self.lowercaseTags:
                text = text.strip().lower()
            if text:
                tags[tag] = text
        return {
            "id": str(nodeid).strip(),
            "hostname": "" if hostname is None else str(hostname),
            "status": status,
            "tags": tags,
        }


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def entriesFromDocument(
    document: Any, mapping: FieldMapping, listKey: Optional[str] = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """
    Turn an inventory answer into entries: the document is a JSON list, or an
    object holding the list under C{listKey} (a dotted path).

    @return: the entries and the problems with records that were skipped.
    @raise InventoryError: if there is no list where one is expected.
    """
    records = document if listKey is None else _lookup(document, listKey)
    if not isinstance(records, list):
        where = "the answer" if listKey is None else f"key {listKey!r}"
        raise InventoryError(f"expected a list of nodes at {where}, got {_short(document)}")
    entries, problems, seen = [], [], set()
    for record in records:
        try:
            entry = mapping.entry(record)
        except InventoryError as e:
            problems.append(str(e))
            continue
        if entry["id"] in seen:
            problems.append(f"node {entry['id']} listed twice; the first one is used")
            continue
        seen.add(entry["id"])
        entries.append(entry)
    return entries, problems


#: The static file holds entries in their own shape.
STATIC_MAPPING = FieldMapping(
    id=Field(paths=("id",)), hostname=Field(paths=("hostname",)), status=Field(
        inner=Field(paths=("status",)), default=NODE_ACTIVE
    ),
)


def loadStaticInventory(path: str) -> list[dict[str, Any]]:
    """
    Read a static inventory: a YAML list of C{{id, hostname, status, tags}}
    (or a mapping with that list under C{nodes}).

    @raise InventoryError: with the file name and the first problem.
    """
    try:
        with open(path, "rb") as f:
            document = yaml.safe_load(f)
    except OSError as e:
        raise InventoryError(f"{path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InventoryError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    if isinstance(document, dict):
        document = document.get("nodes")
    if not isinstance(document, list):
        raise InventoryError(f"{path}: must hold a list of nodes (or 'nodes:' with a list)")
    entries = []
    seen = set()
    for i, record in enumerate(document):
        where = f"{path}: node #{i + 1}"
        if not isinstance(record, dict):
            raise InventoryError(f"{where}: must be a mapping with id, hostname, status, tags")
        unknown = set(record) - {"id", "hostname", "status", "tags"}
        if unknown:
            raise InventoryError(f"{where}: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
        tags = record.get("tags") or {}
        if not isinstance(tags, dict) or any(isinstance(v, (dict, list)) for v in tags.values()):
            raise InventoryError(f"{where}: tags must map tag names to plain values")
        try:
            entry = STATIC_MAPPING.entry(record)
        except InventoryError as e:
            raise InventoryError(f"{where}: {e}") from None
        if entry["id"] in seen:
            raise InventoryError(f"{where}: node {entry['id']} is listed twice")
        seen.add(entry["id"])
        entry["tags"] = {str(k): str(v) for k, v in tags.items() if v is not None}
        entries.append(entry)
    return entries


# -- the inventory REST API -----------------------------------------------------


@attrs.frozen
class InventoryAPI:
    """
    Where and how to poll an inventory REST API.

    @ivar token: the value of the C{tokenHeader} header (e.g. C{"Bearer ..."}), or C{None}.
    @ivar caFile: PEM roots for an inventory with a private CA; C{None} means
        the system's roots.
    """

    url: str
    mapping: FieldMapping
    listKey: Optional[str] = None
    tokenHeader: str = "Authorization"
    token: Optional[str] = None
    timeout: float = 60.0
    maxBytes: int = 64 * 1024 * 1024
    caFile: Optional[str] = None


class _BoundedBody(Protocol):
    """
    Collect a response body, giving up past a size limit so a broken
    inventory cannot fill the controller's memory.

    @ivar finished: fires with the body; cancelling it stops the transfer.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.finished: Deferred = Deferred(lambda _: self._stop())
        self.chunks: list[bytes] = []
        self.size = 0

    def _stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.finished.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.finished.errback(InventoryError(f"answer larger than {self.limit} bytes"))
            self._stop()
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:
        if self.finished.called:
            return
        from twisted.web.client import ResponseDone
        from twisted.web.http import PotentialDataLoss

        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.chunks))
        else:
            self.finished.errback(reason)


class HTTPInventoryFetcher:
    """
    Fetch and decode one inventory answer with twisted.web's Agent.
    """

    def __init__(self, reactor: Any, api: InventoryAPI) -> None:
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

    def __call__(self) -> Deferred:
        """
        @return: a Deferred firing with the decoded JSON document, or failing
            with L{InventoryError} (or a connection error).
        """
        from twisted.web.http_headers import Headers

        headers = Headers({b"Accept": [b"application/json"], b"User-Agent": [b"marvinctld"]})
        if self.api.token is not None:
            headers.addRawHeader(self.api.tokenHeader.encode("ascii"), self.api.token.encode("utf-8"))
        d = self.agent.request(b"GET", self.api.url.encode("ascii"), headers)

        def gotResponse(response: Any) -> Deferred:
            body = _BoundedBody(self.api.maxBytes)
            response.deliverBody(body)
            finished = body.finished
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
    """

    log = Logger()

    def __init__(
        self,
        scheduler: Any,
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


def _describe(failure: Failure) -> str:
    """
    A one-line account of a connection error, a timeout or anything else.
    """
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    if failure.check(DeferredTimeout):
        return "no answer in time"
    text = failure.getErrorMessage() or failure.type.__name__
    inner = getattr(failure.value, "reasons", None)
    if inner:
        text = "; ".join(r.getErrorMessage() or r.type.__name__ for r in inner)
    return text
