# -*- test-case-name: tests.test_ctl_ops -*-
"""
The operator's endpoints on the controller's site: C{/health}, C{/ready}
and C{/metrics} (see L{am.ctl.health} and L{am.ctl.metrics}), mounted like
a face once the scheduler and the root exist.
"""

from __future__ import annotations

from typing import Any


def mountOperations(controller: Any) -> None:
    """
    Mount the endpoints on C{controller.root}; C{/metrics} only unless
    C{metrics.access} is C{off}.
    """
    from am.ctl.health import HealthResource, ReadyResource
    from am.ctl.metrics import MetricsResource
    from rest_compat.auth import Authenticator

    root, metrics, store = controller.root, controller.metrics, controller.store
    sync = controller.sync
    root.putChild(b"health", HealthResource())
    root.putChild(
        b"ready",
        ReadyResource(
            controller.reactor,
            store.read,
            # A worker starts once the main process loaded the inventory.
            lambda: sync is None or not sync.configured or sync.lastSync is not None or controller.worker > 0,
            store.oldestWrite,
        ),
    )
    access = controller.config.metricsAccess
    if access != "off":
        proxies = Authenticator(trustedProxies=controller.config.trustedProxies)
        root.putChild(b"metrics", MetricsResource(metrics, controller.scheduler, access, proxies.isTrustedPeer))
    am = getattr(controller, "aggregateManager", None)
    if am is not None:
        metrics.watchCache("credential", lambda: am.trust.verifier._cache)
        metrics.watchCache("chain", lambda: am.trust.chains._cache)
