# -*- test-case-name: tests.test_node_config -*-
"""
Loading and validating marvind's YAML configuration.

Every problem is reported as one L{ConfigError} whose message names the key
and says what is wrong, so that an operator sees one clear line instead of a
traceback, and so that the agent never starts half-configured (the legacy
agent started without a node id and only noticed later).
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any
from urllib.parse import urlsplit

import attrs

from node import confcheck as check
from node.confcheck import ConfigError

#: Node and schedule ids end up in URLs and file names.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

HOOK_ACTIONS = ("deploy", "start", "stop", "check")

DEFAULT_TIMEOUTS = {
    "request": 10.0,
    "deploy": 900.0,
    "start": 120.0,
    "stop": 120.0,
    "check": 30.0,
    "kill_grace": 5.0,
}


@attrs.frozen
class Timeouts:
    """
    Time limits, in seconds.

    @ivar request: one HTTP exchange with the controller, body included.
    @ivar deploy: the deploy hook (image pulls can be slow).
    @ivar killGrace: between SIGTERM and SIGKILL for a hook past its limit.
    """

    request: float = DEFAULT_TIMEOUTS["request"]
    deploy: float = DEFAULT_TIMEOUTS["deploy"]
    start: float = DEFAULT_TIMEOUTS["start"]
    stop: float = DEFAULT_TIMEOUTS["stop"]
    check: float = DEFAULT_TIMEOUTS["check"]
    killGrace: float = DEFAULT_TIMEOUTS["kill_grace"]

    def forHook(self, action: str) -> float:
        """
        The limit for one hook action.
        """
        return float(getattr(self, action))


@attrs.frozen
class MarvindConfig:
    """
    A validated marvind configuration.

    @ivar controllerURL: base URL of the node routes, e.g.
        C{https://ctl.example:8443/v1}, without a trailing slash.
    @ivar hooks: action (C{deploy}, C{start}, C{stop}, C{check}) to
        executable path; C{check} may be missing.
    @ivar hookEnvironment: extra environment variables for every hook.
    @ivar maxClockSkew: warn when the controller's clock differs from ours by
        more than this many seconds.
    """

    controllerURL: str
    caFile: str
    nodeId: str
    certificateFile: str
    keyFile: str
    stateDirectory: str
    hooks: dict[str, str]
    hookEnvironment: dict[str, str] = attrs.field(factory=dict)
    heartbeatPeriod: float = 60.0
    heartbeatJitter: float = 0.1
    taskLimit: int = 10
    maintenanceFile: str | None = None
    interfacesFile: str | None = None
    timeouts: Timeouts = attrs.field(factory=Timeouts)
    maxClockSkew: float = 10.0
    metricsPort: int | None = None
    metricsAddress: str = "127.0.0.1"
    resultsPeriod: float = 60.0
    resultsBandwidth: float = 0.0
    resultsChunk: int = 256 * 1024


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    return check.section(data, key, key)


def _string(section: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    return check.required(section, key, where) if required else check.string(section, key, where)


def _checkTLSFiles(caFile: str, certFile: str, keyFile: str) -> None:
    """
    Parse the PEM files now so that a wrong path or a key that does not belong
    to the certificate stops the agent at start-up, not at the first request.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    try:
        cas = x509.load_pem_x509_certificates(read(caFile))
    except ValueError:
        raise ConfigError(f"controller.ca: {caFile} holds no PEM certificate") from None
    if not cas:
        raise ConfigError(f"controller.ca: {caFile} holds no PEM certificate")
    try:
        cert = x509.load_pem_x509_certificates(read(certFile))[0]
    except (ValueError, IndexError):
        raise ConfigError(f"tls.certificate: {certFile} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(read(keyFile), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"tls.key: {keyFile} holds no unencrypted PEM private key"
        ) from None
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*raw) != key.public_key().public_bytes(*raw):
        raise ConfigError(f"tls.key: {keyFile} does not belong to the certificate {certFile}")


def parseConfig(data: Any, checkFiles: bool = True) -> MarvindConfig:
    """
    Validate a parsed YAML document.

    @param checkFiles: also check that certificate, key, CA and hook files
        exist and are usable (turned off only by tests of pure parsing).
    @raise ConfigError: on the first problem found.
    """
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a YAML mapping of keys")
    check.known(data, {
        "controller", "node", "tls", "state_directory", "heartbeat", "maintenance_file",
        "interfaces_file", "hooks", "timeouts", "max_clock_skew", "metrics", "results",
    }, "")

    controller = _section(data, "controller")
    url = _string(controller, "url", "controller.url")
    assert url is not None
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"controller.url: must be an https:// URL, not {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError("controller.url: must not have a query or fragment")
    caFile = _string(controller, "ca", "controller.ca")
    assert caFile is not None

    node = _section(data, "node")
    nodeId = _string(node, "id", "node.id", required=False)
    if nodeId is None:
        idFile = _string(node, "idfile", "node.id or node.idfile")
        assert idFile is not None
        try:
            with open(idFile, encoding="utf-8") as f:
                nodeId = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"node.idfile: cannot read {idFile}: {e}") from None
        if not nodeId:
            raise ConfigError(f"node.idfile: {idFile} is empty")
    if not SAFE_ID.match(nodeId):
        raise ConfigError(f"node.id: {nodeId!r} is not a valid node id (letters, digits, . _ -)")

    tls = _section(data, "tls")
    certFile = _string(tls, "certificate", "tls.certificate")
    keyFile = _string(tls, "key", "tls.key") or certFile
    assert certFile is not None and keyFile is not None

    stateDirectory = _string(data, "state_directory", "state_directory")
    assert stateDirectory is not None

    heartbeat = _section(data, "heartbeat")
    period = check.number(heartbeat, "period", "heartbeat.period", 60, 0.1)
    jitter = check.number(heartbeat, "jitter", "heartbeat.jitter", 0.1, 0, 0.5)
    limit = check.number(heartbeat, "limit", "heartbeat.limit", 10, 1, 1000)
    if limit != int(limit):
        raise ConfigError("heartbeat.limit: must be a whole number")

    hooksSection = _section(data, "hooks")
    check.known(hooksSection, set(HOOK_ACTIONS) | {"environment"}, "hooks")
    hooks: dict[str, str] = {}
    for action in HOOK_ACTIONS:
        path = _string(hooksSection, action, f"hooks.{action}", required=action != "check")
        if path is None:
            continue
        if not os.path.isabs(path):
            raise ConfigError(f"hooks.{action}: must be an absolute path, not {path!r}")
        if checkFiles and not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ConfigError(f"hooks.{action}: {path} is not an executable file")
        hooks[action] = path
    environment = hooksSection.get("environment") or {}
    if not isinstance(environment, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
        for k, v in environment.items()
    ):
        raise ConfigError("hooks.environment: must be a mapping of names to strings")

    timeoutsSection = _section(data, "timeouts")
    check.known(timeoutsSection, set(DEFAULT_TIMEOUTS), "timeouts")
    values = {
        key: check.number(timeoutsSection, key, f"timeouts.{key}", default, 0.01)
        for key, default in DEFAULT_TIMEOUTS.items()
    }
    timeouts = Timeouts(
        request=values["request"], deploy=values["deploy"], start=values["start"],
        stop=values["stop"], check=values["check"], killGrace=values["kill_grace"],
    )

    maxSkew = check.number(data, "max_clock_skew", "max_clock_skew", 10, 2)

    metrics = _section(data, "metrics")
    unknownMetrics = sorted(set(map(str, metrics)) - {"port", "address"})
    if unknownMetrics:
        raise ConfigError(f"metrics: unknown key(s): {', '.join(unknownMetrics)}")
    metricsPort = None
    if metrics.get("port") is not None:
        port = check.number(metrics, "port", "metrics.port", 0, 0, 65535)
        if port != int(port):
            raise ConfigError("metrics.port: must be a whole number")
        metricsPort = int(port)
    metricsAddress = _string(metrics, "address", "metrics.address", required=False) or "127.0.0.1"
    try:
        ipaddress.ip_address(metricsAddress)
    except ValueError:
        raise ConfigError(f"metrics.address: {metricsAddress!r} is not an IP address") from None

    results = _section(data, "results")
    check.known(results, {"period", "bandwidth", "chunk"}, "results")
    resultsPeriod = check.number(results, "period", "results.period", 60, 0.1, unit="seconds")
    bandwidth = check.number(results, "bandwidth", "results.bandwidth", 0, 0)
    chunk = check.number(results, "chunk", "results.chunk", 256 * 1024, 1024, 1 << 20)
    if chunk != int(chunk):
        raise ConfigError("results.chunk: must be a whole number of bytes")

    if checkFiles:
        check.readable(caFile, "controller.ca")
        check.readable(certFile, "tls.certificate")
        check.readable(keyFile, "tls.key")
        _checkTLSFiles(caFile, certFile, keyFile)

    return MarvindConfig(
        controllerURL=url.rstrip("/"),
        caFile=caFile,
        nodeId=nodeId,
        certificateFile=certFile,
        keyFile=keyFile,
        stateDirectory=stateDirectory,
        hooks=hooks,
        hookEnvironment={k: str(v) for k, v in environment.items()},
        heartbeatPeriod=period,
        heartbeatJitter=jitter,
        taskLimit=int(limit),
        maintenanceFile=_string(data, "maintenance_file", "maintenance_file", required=False),
        interfacesFile=_string(data, "interfaces_file", "interfaces_file", required=False),
        timeouts=timeouts,
        maxClockSkew=maxSkew,
        metricsPort=metricsPort,
        metricsAddress=metricsAddress,
        resultsPeriod=resultsPeriod,
        resultsBandwidth=bandwidth,
        resultsChunk=int(chunk),
    )


def loadConfig(path: str, checkFiles: bool = True) -> MarvindConfig:
    """
    Read and validate the YAML file at C{path}.

    @raise ConfigError: with a message that names the file.
    """
    data = check.readYAML(path)
    try:
        return parseConfig(data, checkFiles=checkFiles)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
