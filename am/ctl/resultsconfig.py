# -*- test-case-name: tests.test_results_store -*-
"""
The controller's C{results} configuration section, and the results hub
(spool and store) it names (docs/results.md).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import attrs

from node import confcheck as check
from node.confcheck import ConfigError


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


def makeHub(config: ResultsConfig, reactor: Any) -> Any:
    """
    The results hub the configuration names, or C{None} when results are off.

    @raise ConfigError: the S3 secret cannot be read.
    """
    if config.store == "off":
        return None
    from am.results.hub import ResultsHub
    from am.results.spool import Spool

    store: Any
    if config.store == "s3":
        from am.results.s3 import S3ResultStore

        settings = config.s3
        secret = None
        if settings.secretKeyFile:
            try:
                with open(settings.secretKeyFile) as f:
                    secret = f.read().strip()
            except OSError as e:
                raise ConfigError(f"results.s3.secret_key_file: cannot read {settings.secretKeyFile}: {e.strerror}")
        store = S3ResultStore(
            settings.bucket, settings.endpoint, settings.region, settings.accessKey, secret, settings.prefix
        )
    else:
        from am.results.local import LocalResultStore

        store = LocalResultStore(config.directory)
    return ResultsHub.threaded(store, Spool(config.spool), reactor)
