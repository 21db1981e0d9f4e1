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

from am.ctl.inventory import FieldMapping, InventoryAPI, InventoryError, loadStaticInventory
from am.ctl.oauth import OAuth2Settings
from am.core.accounts import normaliseFingerprint
from am.core.errors import BadRequest
from am.core.policy import Policy
from am.ctl.notifyconfig import NotifierSettings, parseNotifications
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
class InventoryConfig:
    """
    Where nodes come from, and how often to look.
    """

    file: Optional[str] = None
    api: Optional[InventoryAPI] = None
    period: float = 3600.0
    retry: float = 60.0


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


STORES = ("local", "s3", "off")


@attrs.frozen
class S3Settings:
    bucket: str
    endpoint: Optional[str] = None
    region: Optional[str] = None
    accessKey: Optional[str] = None
    secretKeyFile: Optional[str] = None
    prefix: str = ""


@attrs.frozen
class ResultsConfig:
    """
    Where results go; C{store} C{off} answers 501 on the results routes.
    """

    store: str = "off"
    directory: Optional[str] = None
    spool: Optional[str] = None
    period: float = 60.0
    s3: Optional[S3Settings] = None


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
        defaultDuration=int(_number(section, "default_duration", "geni.default_duration", 3600, 60)),
        maxRequest=int(_number(section, "max_request", "geni.max_request", 4 * 1024 * 1024, 1024)),
        adCache=int(_number(section, "ad_cache", "geni.ad_cache", 60, 0)),
    )


# -- small validators (the shared ones are in node.confcheck) ----------------------


def _number(section: dict[str, Any], key: str, where: str, default: float, low: float) -> float:
    return check.number(section, key, where, default, low, unit="seconds")



def _workers(data: dict[str, Any], inFile: bool) -> int:
    """
    How many processes serve (docs/sqlite.md, "More than one core"): a SQLite
    file only; PostgreSQL runs several controllers instead.
    """
    value = data.get("workers", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise ConfigError(f"workers: must be a whole number between 1 and 64, not {value!r}")
    if value > 1 and not inFile:
        raise ConfigError(
            f"workers: more than one only with a SQLite file (with PostgreSQL run several controllers), not {value!r}"
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
        readTimeout=_number(listen, "request_timeout", "listen.request_timeout", DEFAULT_READ_TIMEOUT, 1),
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


def _inventory(data: dict[str, Any], base: str, checkFiles: bool) -> InventoryConfig:
    section = check.section(data, "inventory", "inventory")
    check.known(section, {"file", "api", "period", "retry"}, "inventory")
    path = check.string(section, "file", "inventory.file")
    staticFile = None if path is None else check.path(base, path)
    if staticFile is not None and checkFiles:
        try:
            # Kept for the first sync at start, which then does not parse it again.
            loadStaticInventory(staticFile, keep=True)
        except InventoryError as e:
            raise ConfigError(f"inventory.file: {e}") from None
    api = None
    if section.get("api") is not None:
        api = _inventoryAPI(check.section(section, "api", "inventory.api"), base, checkFiles)
    return InventoryConfig(
        file=staticFile,
        api=api,
        period=_number(section, "period", "inventory.period", 3600, 1),
        retry=_number(section, "retry", "inventory.retry", 60, 1),
    )


def _inventoryAPI(section: dict[str, Any], base: str, checkFiles: bool) -> InventoryAPI:
    where = "inventory.api"
    check.known(
        section,
        {"url", "token_header", "token", "token_file", "oauth2", "timeout", "list_key", "max_bytes", "ca", "fields"},
        where,
    )
    url = check.required(section, "url", f"{where}.url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.url: must be an http:// or https:// URL, not {url!r}")
    token = check.string(section, "token", f"{where}.token")
    tokenFile = check.string(section, "token_file", f"{where}.token_file")
    if token is not None and tokenFile is not None:
        raise ConfigError(f"{where}: give token or token_file, not both")
    if tokenFile is not None:
        tokenFile = check.path(base, tokenFile)
        token = check.readable(tokenFile, f"{where}.token_file").decode("utf-8", "replace").strip()
    oauth2 = None
    if section.get("oauth2") is not None:
        if token is not None or tokenFile is not None:
            raise ConfigError(f"{where}: give oauth2 or a static token (token, token_file), not both")
        oauth2 = _oauth2(check.section(section, "oauth2", f"{where}.oauth2"), base, checkFiles)
    header = check.string(section, "token_header", f"{where}.token_header", "Authorization") or "Authorization"
    if not all(c.isalnum() or c in "-_" for c in header):
        raise ConfigError(f"{where}.token_header: not a valid header name: {header!r}")
    ca = check.string(section, "ca", f"{where}.ca")
    if ca is not None:
        ca = check.path(base, ca)
        if checkFiles and b"-----BEGIN CERTIFICATE-----" not in check.readable(ca, f"{where}.ca"):
            raise ConfigError(f"{where}.ca: {ca} holds no PEM certificate")
    maxBytes = section.get("max_bytes", 64 * 1024 * 1024)
    if isinstance(maxBytes, bool) or not isinstance(maxBytes, int) or maxBytes < 1024:
        raise ConfigError(f"{where}.max_bytes: must be a number of bytes, at least 1024")
    try:
        mapping = FieldMapping.fromConfig(section.get("fields"), f"{where}.fields")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return InventoryAPI(
        url=url,
        mapping=mapping,
        listKey=check.string(section, "list_key", f"{where}.list_key"),
        tokenHeader=header,
        token=token,
        tokenFile=tokenFile,
        oauth2=oauth2,
        timeout=_number(section, "timeout", f"{where}.timeout", 60, 1),
        maxBytes=maxBytes,
        caFile=ca,
    )


def _oauth2(section: dict[str, Any], base: str, checkFiles: bool) -> OAuth2Settings:
    where = "inventory.api.oauth2"
    check.known(
        section,
        {"token_url", "client_id", "client_secret_file", "scope", "auth", "refresh_margin", "timeout",
         "min_backoff", "max_backoff", "ca"},
        where,
    )
    url = check.required(section, "token_url", f"{where}.token_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.token_url: must be an http:// or https:// URL, not {url!r}")
    secretFile = check.path(base, check.required(section, "client_secret_file", f"{where}.client_secret_file"))
    if checkFiles and not check.readable(secretFile, f"{where}.client_secret_file").strip():
        raise ConfigError(f"{where}.client_secret_file: {secretFile} is empty")
    auth = check.string(section, "auth", f"{where}.auth", "basic")
    if auth not in ("basic", "body"):
        raise ConfigError(f"{where}.auth: must be basic or body, not {auth!r}")
    ca = check.string(section, "ca", f"{where}.ca")
    if ca is not None:
        ca = check.path(base, ca)
        if checkFiles and b"-----BEGIN CERTIFICATE-----" not in check.readable(ca, f"{where}.ca"):
            raise ConfigError(f"{where}.ca: {ca} holds no PEM certificate")
    minBackoff = _number(section, "min_backoff", f"{where}.min_backoff", 5, 1)
    return OAuth2Settings(
        tokenURL=url,
        clientId=check.required(section, "client_id", f"{where}.client_id"),
        secretFile=secretFile,
        scope=check.string(section, "scope", f"{where}.scope"),
        auth=auth,
        margin=_number(section, "refresh_margin", f"{where}.refresh_margin", 60, 0),
        timeout=_number(section, "timeout", f"{where}.timeout", 30, 1),
        minBackoff=minBackoff,
        maxBackoff=_number(section, "max_backoff", f"{where}.max_backoff", 600, minBackoff),
        caFile=ca,
    )


def parseResults(data: dict[str, Any], base: str, database: str) -> ResultsConfig:
    """
    @param database: the SQLite file (its directory holds the default
        locations) or a PostgreSQL URL (no default: name the directories).
    """
    section = check.section(data, "results", "results")
    check.known(section, {"store", "directory", "spool", "period", "s3"}, "results")
    inFile = database != ":memory:" and not database.startswith(("postgresql://", "postgres://"))
    beside = os.path.dirname(database) if inFile else None
    store = check.string(section, "store", "results.store", "local" if beside or "directory" in section else "off")
    if store not in STORES:
        raise ConfigError(f"results.store: must be one of {', '.join(STORES)}, not {store!r}")
    period = check.number(section, "period", "results.period", 60, 0.1, unit="seconds")
    if store == "off":
        return ResultsConfig(period=period)
    directory = check.string(section, "directory", "results.directory")
    directory = check.path(base, directory) if directory else (os.path.join(beside, "results") if beside else None)
    spool = check.string(section, "spool", "results.spool")
    spool = check.path(base, spool) if spool else (os.path.join(directory, "spool") if directory else None)
    s3 = None
    if store == "local" and directory is None:
        raise ConfigError("results.directory: name a directory for the local results store")
    if store == "s3":
        s3 = _s3(check.section(section, "s3", "results.s3"), base)
    if spool is None:
        raise ConfigError("results.spool: name a directory for uploads in progress")
    return ResultsConfig(store=store, directory=directory, spool=spool, period=period, s3=s3)


def _s3(section: dict[str, Any], base: str) -> S3Settings:
    check.known(section, {"bucket", "endpoint", "region", "access_key", "secret_key_file", "prefix"}, "results.s3")
    secret = check.string(section, "secret_key_file", "results.s3.secret_key_file")
    return S3Settings(
        bucket=check.required(section, "bucket", "results.s3.bucket"),
        endpoint=check.string(section, "endpoint", "results.s3.endpoint"),
        region=check.string(section, "region", "results.s3.region"),
        accessKey=check.string(section, "access_key", "results.s3.access_key"),
        secretKeyFile=check.path(base, secret) if secret else None,
        prefix=check.string(section, "prefix", "results.s3.prefix", "") or "",
    )


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

    workers = _workers(data, inFile)

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
        inventory=_inventory(data, base, checkFiles),
        policy=policy,
        expiryPeriod=_number(housekeeping, "expiry_period", "housekeeping.expiry_period", 60, 1),
        sweepPeriod=_number(housekeeping, "sweep_period", "housekeeping.sweep_period", 60, 1),
        healPeriod=_number(housekeeping, "heal_period", "housekeeping.heal_period", 60, 1),
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

