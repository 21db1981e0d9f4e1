# -*- test-case-name: tests.test_results_store -*-
"""
The results hub (spool and store) the controller's C{results} configuration
names (L{am.ctl.config.ResultsConfig}; docs/results.md).
"""

from __future__ import annotations

from typing import Any

from am.ctl.config import ConfigError, ResultsConfig


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
