# -*- test-case-name: tests.test_ctl_config -*-
"""
marvinctld's YAML configuration: loading, validation and the demo defaults.

Every problem becomes one L{ConfigError} naming the key and what is wrong,
so a bad file stops start-up with one line instead of a traceback, and the
controller never runs half-configured. Relative paths are relative to the
configuration file. C{files/etc/marvinctld.conf} explains every key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from node import confcheck as check
from node.confcheck import ConfigError, readYAML

from am.ctl.inventoryconfig import InventoryConfig, parseInventory
from am.core.accounts import normaliseFingerprint
from am.core.errors import BadRequest
from am.core.policy import Policy
from am.ctl.notifyconfig import NotifierSettings, parseNotifications
from am.ctl.resultsconfig import ResultsConfig, parseResults
from am.ctl.slowclients import DEFAULT_PER_PEER, DEFAULT_READ_TIMEOUT, ClientLimits
from am.store.sqlite import SYNCHRONOUS_LEVELS

LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
_NUMERIC_LEVELS = {10: "debug", 20: "info", 30: "warn", 40: "error", 50: "critical"}


@attrs.frozen
class TLSListener:
    """
    The HTTPS listener; it requires a client certificate issued by one of
    C{clientCA} (and only those: never the system store).
    """

    address: str
    port: int
    certificate: str
    key: str
    clientCA: tuple[str, ...]


@attrs.frozen
class HTTPListener:
    """
    A plain HTTP listener for a TLS-terminating proxy on the same host.
    """

    address: str
    port: int


@attrs.frozen
class BootstrapUser:
    """
    A user created on start when no user has its fingerprint yet.
    """

    name: str
    fingerprint: str
    role: str = "admin"
    project: str = ""
    urn: Optional[str] = None


@attrs.frozen
class LogConfig:
    """
    C{file} is a path or C{"-"} for standard output.
    """

    file: str = "-"
    level: str = "info"
    format: str = "text"


@attrs.frozen
class GeniConfig:
    """
    The GENI AM API face: served on the TLS listener at C{/xmlrpc/am/3.0}.
    """

    authority: str
    trustRoots: tuple[str, ...]
    defaultImage: Optional[str] = None
    defaultDuration: int = 3600
    maxRequest: int = 4 * 1024 * 1024
    adCache: int = 60


@attrs.frozen
class DemoSetup:
    """
    What C{--demo} made: its directory and development PKI.
    """

    directory: str
    pki: Any


@attrs.frozen
class ControllerConfig:
    """
    A validated marvinctld configuration.
    """

    database: str
    tls: Optional[TLSListener] = None
    http: Optional[HTTPListener] = None
    trustedProxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    verifiedHeader: str = "VERIFIED"
    fingerprintHeader: str = "SSL_FINGERPRINT"
    certificateHeader: str = "SSL_CLIENT_CERT"
    metricsAccess: str = "proxy"
    bootstrap: tuple[BootstrapUser, ...] = ()
    inventory: InventoryConfig = attrs.field(factory=InventoryConfig)
    policy: Policy = attrs.field(factory=Policy)
    expiryPeriod: float = 60.0
    sweepPeriod: float = 60.0
    healPeriod: float = 60.0
    corsOrigins: Optional[tuple[str, ...]] = None
    log: LogConfig = attrs.field(factory=LogConfig)
    publicURL: Optional[str] = None
    publicURLDerived: bool = False
    demo: Optional[DemoSetup] = None
    geni: Optional[GeniConfig] = None
    sqliteSynchronous: str = "full"
    workers: int = 1
    clientLimits: ClientLimits = attrs.field(factory=ClientLimits)
    notifier: NotifierSettings = attrs.field(factory=NotifierSettings)
    results: ResultsConfig = attrs.field(factory=ResultsConfig)


KNOWN_KEYS = {
    "demo", "demo_dir", "database", "sqlite", "public_url", "listen", "trusted_proxies", "headers",
    "admins", "inventory", "housekeeping", "scheduling", "cors", "log", "geni", "metrics", "notifications",
    "results", "workers",
}

_AUTHORITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$")


def _geni(
    data: dict[str, Any], base: str, tls: Optional[TLSListener], checkFiles: bool, http: Optional[HTTPListener] = None
) -> Optional[GeniConfig]:
    section = data.get("geni")
    if section is None:
        return None
    section = check.section(data, "geni", "geni")
    check.known(section, {"authority", "trust_roots", "default_image", "default_duration", "max_request", "ad_cache"}, "geni")
    authority = check.required(section, "authority", "geni.authority")
    if not _AUTHORITY.match(authority):
        raise ConfigError(f"geni.authority: {authority!r} is not a URN authority like marvin.example.org")
    roots = [check.path(base, p) for p in check.stringList(section.get("trust_roots"), "geni.trust_roots")]
    if not roots:
        raise ConfigError("geni.trust_roots: list the GENI clearinghouse root certificates (PEM files or directories)")
    if checkFiles:
        for root in roots:
            if not os.path.exists(root):
                raise ConfigError(f"geni.trust_roots: {root} does not exist")
    if tls is None and http is None:
        raise ConfigError(
            "geni: the GENI face needs listen.tls, or listen.http behind a TLS proxy that passes "
            "the client certificate (clients authenticate with certificates)"
        )
    return GeniConfig(
        authority=authority,
        trustRoots=tuple(roots),
        defaultImage=check.string(section, "default_image", "geni.default_image"),
        defaultDuration=int(check.seconds(section, "default_duration", "geni.default_duration", 3600, 60)),
        maxRequest=int(check.seconds(section, "max_request", "geni.max_request", 4 * 1024 * 1024, 1024)),
        adCache=int(check.seconds(section, "ad_cache", "geni.ad_cache", 60, 0)),
    )


# -- small validators (the shared ones are in node.confcheck) ----------------------



def _workers(data: dict[str, Any], shared: bool) -> int:
    """
    How many processes serve (docs/sqlite.md, "More than one core";
    docs/postgresql.md, "workers: N"): a database they can share, a SQLite
    file or PostgreSQL, not one in memory.
    """
    value = data.get("workers", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise ConfigError(f"workers: must be a whole number between 1 and 64, not {value!r}")
    if value > 1 and not shared:
        raise ConfigError(
            f"workers: more than one only with a SQLite file or PostgreSQL (a database in memory is one process's), "
            f"not {value!r}"
        )
    return value


def _port(section: dict[str, Any], where: str, default: int) -> int:
    value = section.get("port", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{where}.port: must be a port number 0-65535, not {value!r}")
    return value


def _address(section: dict[str, Any], where: str, default: str) -> str:
    value = check.string(section, "address", f"{where}.address", default) or default
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{where}.address: must be an IP address, not {value!r}") from None
    return value


def fingerprintOf(pem: bytes) -> str:
    """
    The REST face's name for a certificate: SHA-1 of its DER, lowercase hex.
    """
    certificate = x509.load_pem_x509_certificate(pem)
    return hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _checkTLS(tls: TLSListener) -> None:
    """
    Parse the PEM files now, so a wrong path or a key of another certificate
    stops start-up with a message rather than failing the first handshake.
    """
    where = "listen.tls"
    try:
        chain = x509.load_pem_x509_certificates(check.readable(tls.certificate, f"{where}.certificate"))
    except ValueError:
        raise ConfigError(f"{where}.certificate: {tls.certificate} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(check.readable(tls.key, f"{where}.key"), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}.key: {tls.key} holds no unencrypted PEM private key") from None
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(*raw) != key.public_key().public_bytes(*raw):
        raise ConfigError(f"{where}.key: {tls.key} does not belong to the certificate {tls.certificate}")
    for path in tls.clientCA:
        try:
            x509.load_pem_x509_certificates(check.readable(path, f"{where}.client_ca"))
        except ValueError:
            raise ConfigError(f"{where}.client_ca: {path} holds no PEM certificate") from None


# -- sections -----------------------------------------------------------------


def _clientLimits(listen: dict[str, Any]) -> ClientLimits:
    perPeer = listen.get("max_connections_per_peer", DEFAULT_PER_PEER)
    if isinstance(perPeer, bool) or not isinstance(perPeer, int) or perPeer < 1:
        raise ConfigError(f"listen.max_connections_per_peer: must be a whole number of at least 1, not {perPeer!r}")
    return ClientLimits(
        readTimeout=check.seconds(listen, "request_timeout", "listen.request_timeout", DEFAULT_READ_TIMEOUT, 1),
        perPeer=perPeer,
    )


def _listeners(data: dict[str, Any], base: str) -> tuple[Optional[TLSListener], Optional[HTTPListener]]:
    listen = check.section(data, "listen", "listen")
    check.known(listen, {"tls", "http", "request_timeout", "max_connections_per_peer"}, "listen")
    tls = http = None
    if listen.get("tls") is not None:
        section = check.section(listen, "tls", "listen.tls")
        check.known(section, {"address", "port", "certificate", "key", "client_ca"}, "listen.tls")
        roots = check.stringList(section.get("client_ca"), "listen.tls.client_ca")
        if not roots:
            raise ConfigError(
                "listen.tls.client_ca: required: the CA file(s) whose client certificates are accepted"
            )
        tls = TLSListener(
            address=_address(section, "listen.tls", "0.0.0.0"),
            port=_port(section, "listen.tls", 8443),
            certificate=check.path(base, check.required(section, "certificate", "listen.tls.certificate")),
            key=check.path(base, check.required(section, "key", "listen.tls.key")),
            clientCA=tuple(check.path(base, r) for r in roots),
        )
    if listen.get("http") is not None:
        section = check.section(listen, "http", "listen.http")
        check.known(section, {"address", "port"}, "listen.http")
        http = HTTPListener(
            address=_address(section, "listen.http", "127.0.0.1"), port=_port(section, "listen.http", 9098)
        )
    if tls is None and http is None:
        raise ConfigError("listen: configure listen.tls, listen.http or both")
    return tls, http


def _admins(data: dict[str, Any], base: str, checkFiles: bool = True) -> list[BootstrapUser]:
    admins = data.get("admins")
    if admins is None:
        return []
    if not isinstance(admins, list):
        raise ConfigError("admins: must be a list of {name, fingerprint} (or {name, certificate})")
    users = []
    for i, item in enumerate(admins):
        where = f"admins[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a mapping with name and fingerprint (or certificate)")
        check.known(item, {"name", "fingerprint", "certificate", "project"}, where)
        name = check.required(item, "name", f"{where}.name")
        fingerprint = check.string(item, "fingerprint", f"{where}.fingerprint")
        certificate = check.string(item, "certificate", f"{where}.certificate")
        if (fingerprint is None) == (certificate is None):
            raise ConfigError(f"{where}: give exactly one of fingerprint or certificate")
        if certificate is not None and not checkFiles:
            users.append(BootstrapUser(name=name, fingerprint="", project=check.string(item, "project", where) or ""))
            continue
        if certificate is not None:
            path = check.path(base, certificate)
            try:
                fingerprint = fingerprintOf(check.readable(path, f"{where}.certificate"))
            except ValueError:
                raise ConfigError(f"{where}.certificate: {path} holds no PEM certificate") from None
        assert fingerprint is not None
        try:
            fingerprint = normaliseFingerprint(fingerprint)
        except BadRequest:
            raise ConfigError(
                f"{where}.fingerprint: must be the SHA-1 fingerprint of the certificate "
                "(40 hex digits, colons allowed)"
            ) from None
        users.append(BootstrapUser(name=name, fingerprint=fingerprint, project=check.string(item, "project", where) or ""))
    return users


def _log(data: dict[str, Any], base: str, checkFiles: bool = True) -> LogConfig:
    section = check.section(data, "log", "log")
    check.known(section, {"file", "level", "format"}, "log")
    path = check.string(section, "file", "log.file", "-") or "-"
    level = section.get("level", "info")
    if isinstance(level, int) and not isinstance(level, bool):
        level = _NUMERIC_LEVELS.get(level, level)
    if isinstance(level, str):
        level = level.strip().lower()
        level = "warn" if level == "warning" else level
    if level not in LOG_LEVELS:
        raise ConfigError(f"log.level: must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    form = check.string(section, "format", "log.format", "text")
    if form not in ("text", "json"):
        raise ConfigError(f"log.format: must be text or json, not {form!r}")
    if path != "-":
        path = check.path(base, path)
        if checkFiles and not os.path.isdir(os.path.dirname(path)):
            raise ConfigError(f"log.file: the directory of {path} does not exist")
    return LogConfig(file=path, level=level, format=form)


def parseConfig(
    data: Any,
    base: str = ".",
    checkFiles: bool = True,
    demo: Optional[DemoSetup] = None,
    hostname: Optional[Callable[[], str]] = None,
) -> ControllerConfig:
    """
    Validate a parsed YAML document.

    @param base: the directory relative paths are resolved against.
    @param checkFiles: also read certificates, keys and the static inventory
        (turned off only by tests of pure parsing).
    @raise ConfigError: on the first problem found.
    """
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a YAML mapping of keys")
    check.known(data, KNOWN_KEYS, "")
    base = os.path.abspath(base)

    database = check.required(data, "database", "database")
    # A PostgreSQL URL goes to the store as it is; anything else is a SQLite file.
    inFile = database != ":memory:" and not database.startswith(("postgresql://", "postgres://"))
    database = check.path(base, database) if inFile else database
    if checkFiles and inFile and not os.path.isdir(os.path.dirname(database)):
        raise ConfigError(f"database: the directory of {database} does not exist")

    sqlite = check.section(data, "sqlite", "sqlite")
    check.known(sqlite, {"synchronous"}, "sqlite")
    synchronous = (check.string(sqlite, "synchronous", "sqlite.synchronous", "full") or "full").lower()
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ConfigError(f"sqlite.synchronous: must be one of {', '.join(SYNCHRONOUS_LEVELS)}, not {synchronous!r}")

    workers = _workers(data, database != ":memory:")

    tls, http = _listeners(data, base)
    limits = _clientLimits(check.section(data, "listen", "listen"))
    if tls is not None and checkFiles:
        _checkTLS(tls)

    proxies = check.stringList(data.get("trusted_proxies", ["127.0.0.1/32", "::1/128"]), "trusted_proxies")
    for cidr in proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"trusted_proxies: not an address or network: {cidr!r}") from None

    headers = check.section(data, "headers", "headers")
    check.known(headers, {"verified", "fingerprint", "client_certificate"}, "headers")
    verified = check.string(headers, "verified", "headers.verified", "VERIFIED") or "VERIFIED"
    fingerprint = check.string(headers, "fingerprint", "headers.fingerprint", "SSL_FINGERPRINT") or "SSL_FINGERPRINT"
    certificate = (
        check.string(headers, "client_certificate", "headers.client_certificate", "SSL_CLIENT_CERT") or "SSL_CLIENT_CERT"
    )

    metrics = check.section(data, "metrics", "metrics")
    check.known(metrics, {"access"}, "metrics")
    metricsAccess = check.string(metrics, "access", "metrics.access", "proxy")
    if metricsAccess not in ("open", "proxy", "off"):
        raise ConfigError(f"metrics.access: must be open, proxy or off, not {metricsAccess!r}")

    bootstrap = _admins(data, base, checkFiles)
    if demo is not None:
        pki = demo.pki
        bootstrap = [
            BootstrapUser(
                name="Marvin demo admin", fingerprint=pki.fingerprints["admin"], urn=pki.urns["admin"]
            ),
            BootstrapUser(
                name="Marvin demo user", fingerprint=pki.fingerprints["user"], role="user",
                project="demo", urn=pki.urns["user"],
            ),
        ] + [
            # One node user per demo agent identity: "node" is node 1, "nodeN" node N.
            BootstrapUser(name=f"Node {name[4:] or '1'}", fingerprint=fp, role="node")
            for name, fp in pki.fingerprints.items() if name.startswith("node")
        ] + bootstrap

    housekeeping = check.section(data, "housekeeping", "housekeeping")
    check.known(housekeeping, {"expiry_period", "sweep_period", "heal_period"}, "housekeeping")

    try:
        policy = Policy.fromConfig(check.section(data, "scheduling", "scheduling"))
    except (ValueError, TypeError) as e:
        message = str(e)
        raise ConfigError(message if message.startswith("scheduling") else f"scheduling: {message}") from None
    try:
        notifier, policy = parseNotifications(check.section(data, "notifications", "notifications"), policy)
    except ValueError as e:
        raise ConfigError(str(e)) from None

    cors = check.section(data, "cors", "cors")
    check.known(cors, {"origins"}, "cors")
    origins = check.stringList(cors.get("origins"), "cors.origins")
    for origin in origins:
        if origin != "*" and urlsplit(origin).scheme not in ("http", "https"):
            raise ConfigError(f"cors.origins: {origin!r} is not an origin like https://ui.example.org")

    publicURL = check.string(data, "public_url", "public_url")
    derived = False
    if publicURL is not None:
        parts = urlsplit(publicURL)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"public_url: must be an https:// URL, not {publicURL!r}")
    elif tls is not None:
        if tls.address in ("127.0.0.1", "::1"):
            host = "localhost"  # true: only this machine can call
        elif tls.address in ("0.0.0.0", "::"):
            host = _machineName(hostname or _fqdn, data.get("geni") is not None)
            derived = True
        else:
            host = f"[{tls.address}]" if ":" in tls.address else tls.address
        publicURL = f"https://{host}:{tls.port}/"

    return ControllerConfig(
        database=database,
        tls=tls,
        http=http,
        trustedProxies=tuple(proxies),
        verifiedHeader=verified,
        fingerprintHeader=fingerprint,
        certificateHeader=certificate,
        metricsAccess=metricsAccess,
        bootstrap=tuple(bootstrap),
        inventory=parseInventory(data, base, checkFiles),
        policy=policy,
        expiryPeriod=check.seconds(housekeeping, "expiry_period", "housekeeping.expiry_period", 60, 1),
        sweepPeriod=check.seconds(housekeeping, "sweep_period", "housekeeping.sweep_period", 60, 1),
        healPeriod=check.seconds(housekeeping, "heal_period", "housekeeping.heal_period", 60, 1),
        corsOrigins=tuple(origins) if origins else None,
        log=_log(data, base, checkFiles),
        publicURL=publicURL,
        publicURLDerived=derived,
        demo=demo,
        geni=_geni(data, base, tls, checkFiles, http),
        sqliteSynchronous=synchronous,
        workers=workers,
        clientLimits=limits,
        notifier=notifier,
        results=parseResults(data, base, database),
    )


_fqdn = socket.getfqdn


def _machineName(hostname: Callable[[], str], geni: bool) -> str:
    """
    The host name to advertise for a wildcard listener without C{public_url}:
    this machine's fully qualified name. GENI clients use the URL GetVersion
    gives, so with a GENI face a name that only means this machine
    (C{localhost}, or no name at all) refuses to start instead.
    """
    try:
        name = (hostname() or "").strip().rstrip(".")
    except OSError:
        name = ""
    if not name or name.lower() == "localhost" or name.lower().startswith("localhost."):
        if geni:
            raise ConfigError(
                "public_url: the TLS listener is on a wildcard address and this machine has no real host name "
                f"({name or 'none'!r}), so GetVersion would send GENI clients to localhost; "
                "set public_url to the https:// URL clients reach"
            )
        return "localhost"
    return name


# -- loading and the demo -----------------------------------------------------------


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def loadConfig(
    path: Optional[str] = None,
    demo: bool = False,
    demoDir: Optional[str] = None,
    checkFiles: bool = True,
    prepareDemo: Optional[Callable[[str], tuple[dict[str, Any], DemoSetup]]] = None,
) -> ControllerConfig:
    """
    Load the file at C{path}; with C{demo} (or C{demo: true} in the file),
    fill in everything the file leaves out with the demo defaults, making the
    demo directory, its development CA and certificates on first use.

    @param prepareDemo: makes the demo directory and returns its defaults
        (L{am.ctl.demo.prepareDemo}); passed in so that configuration and
        the development PKI never import each other.

    @raise ConfigError: on the first problem found.
    """
    data: Any = {}
    base = os.getcwd()
    if path is not None:
        data = readYAML(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a YAML mapping of keys")
        base = os.path.dirname(os.path.abspath(path))
    if demo:
        data["demo"] = True
    if "demo" in data and not isinstance(data["demo"], bool):
        raise ConfigError("demo: must be true or false")
    setup = None
    if data.get("demo"):
        directory = demoDir or check.string(data, "demo_dir", "demo_dir") or "marvin-demo"
        directory = check.path(base if demoDir is None else os.getcwd(), directory)
        if prepareDemo is None:
            raise ConfigError("demo: this program cannot prepare a demo (run marvinctld --demo)")
        try:
            defaults, setup = prepareDemo(directory)
        except OSError as e:
            raise ConfigError(f"demo_dir: cannot prepare {directory}: {e.strerror or e}") from None
        data = _merge(defaults, data)
    return parseConfig(data, base, checkFiles=checkFiles, demo=setup)

