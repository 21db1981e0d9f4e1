# -*- test-case-name: tests.test_geni_face -*-
"""
Mount the GENI AM API face on the controller's site.

C{/xmlrpc/am} and C{/xmlrpc/am/3.0} both reach the AM (GetVersion is commonly
asked at the former); the TLS listener already requires a client certificate
chained to the configured roots, GENI's included. Behind a TLS proxy (on the
plain listener) the caller's certificate comes in the configured header from
a trusted proxy only, and is verified against the GENI roots here.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource

from am.geni.service import AggregateManager, Settings
from am.geni.xmlrpc import AggregateManagerResource
from am.trust.gate import Trust
from am.trust.urn import makeURN

log = Logger()


def buildAggregateManager(controller: Any) -> AggregateManager:
    """
    The AM for a controller's scheduler and GENI configuration.
    """
    geni = controller.config.geni
    amURN = makeURN(geni.authority, "authority", "am")
    trust = Trust.fromPaths(geni.trustRoots, amURN, clock=controller.reactor)
    publicURL = (controller.config.publicURL or "https://localhost/").rstrip("/") + "/xmlrpc/am/3.0"
    if getattr(controller.config, "publicURLDerived", False):
        log.info("GetVersion sends GENI clients to {url} (this machine's name: set public_url to choose another)",
                 url=publicURL)
    else:
        log.info("GetVersion sends GENI clients to {url}", url=publicURL)
    settings = Settings(
        authority=geni.authority,
        publicURL=publicURL,
        defaultDuration=geni.defaultDuration,
        defaultImage=geni.defaultImage,
        adCacheSeconds=geni.adCache,
        resultsBase=(controller.config.publicURL or "https://localhost/").rstrip("/") + "/v1/schedules/",
    )
    return AggregateManager(controller.scheduler, trust, settings, getattr(controller, "usersVersion", None))


def mountGENI(controller: Any) -> None:
    """
    A face for L{am.ctl.service.Controller}: C{/xmlrpc/am[/3.0]} on its root.
    """
    from am.trust.proxies import TrustedProxies, proxiedCallerFromRequest
    from am.trust.tls import callerFromRequest

    am = buildAggregateManager(controller)
    controller.aggregateManager = am
    config = controller.config
    proxies = TrustedProxies(config.trustedProxies)

    def identify(request: Any) -> Any:
        return proxiedCallerFromRequest(
            request, proxies, config.certificateHeader, am.trust.callerFromPEM, callerFromRequest
        )

    xmlrpcRoot = Resource()
    xmlrpcRoot.putChild(b"am", AggregateManagerResource(am, maxBody=config.geni.maxRequest, identify=identify))
    controller.root.putChild(b"xmlrpc", xmlrpcRoot)
