"""
Set-up for GENI face tests: the shared test PKI, a trust layer and a scheduler
on one clock, request RSpecs, and credentials.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from am.geni.service import AggregateManager, Settings
from am.core.policy import Policy
from am.testing import makeScheduler
from am.devtools import authority
from am.trust.certs import Caller
from am.trust.gate import Trust
from rspec.times import formatTime
from tests.trust_helpers import NOW, pki, sfa

AUTHORITY = "geni:marvin"
V3 = {"geni_rspec_version": {"type": "GENI", "version": "3"}}


def requestRSpec(nodes: list[str] = ("1",), start: int | None = None, stop: int | None = None,
                 image: str = "docker.io/monroe/ping", unbound: str | None = None, count: int = 1) -> str:
    """
    A jFed-style request: bound nodes (or one unbound node with a marvin:filter),
    one ol:lease when a window is given.
    """
    lease = ""
    ref = ""
    if start is not None:
        lease = f'<ol:lease client_id="l1" valid_from="{formatTime(start)}" valid_until="{formatTime(stop)}"/>'
        ref = '<ol:lease_ref id_ref="l1"/>'
    body = ""
    if unbound is not None:
        body = (f'<node client_id="any" exclusive="true"><marvin:filter nodetypes="{unbound}" count="{count}"/>'
                f'<sliver_type name="container"><disk_image url="{image}"/></sliver_type>{ref}</node>')
    for n in nodes if unbound is None else ():
        body += (f'<node client_id="n{n}" component_id="urn:publicid:IDN+{AUTHORITY}+node+{n}" '
                 f'component_manager_id="urn:publicid:IDN+{AUTHORITY}+authority+am" exclusive="true">'
                 f'<sliver_type name="container"><disk_image url="{image}"/></sliver_type>{ref}</node>')
    return ('<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3" '
            'xmlns:ol="http://nitlab.inf.uth.gr/schema/sfa/rspec/1" '
            'xmlns:marvin="http://marvin.monroe-project.eu/rspec/ext/1">'
            f'{lease}{body}</rspec>')


class GeniTestCase(SynchronousTestCase):
    """
    An AM over the in-memory store with three nodes, no maintenance windows, on
    the trust layer's clock; Alice owns slice s1 and Bob none.
    """

    def setUp(self) -> None:
        self.p = pki()
        self.scheduler, self.store, self.clock = makeScheduler(3, NOW, Policy(maintenance=()))
        self.trust = Trust([self.p.ca.certificate], self.p.am.urn, clock=self.clock)
        self.am = AggregateManager(self.scheduler, self.trust, Settings(AUTHORITY, "https://am.example.org:8443/xmlrpc/am/3.0"))
        self.alice = Caller(self.p.alice.urn, self.p.alice.certificate)
        self.bob = Caller(self.p.bob.urn, self.p.bob.certificate)
        self.s1 = self.p.s1.urn
        self.s2 = self.p.s2.urn

    def sliceCred(self, user=None, slice_=None, **kw: Any) -> list[dict]:
        return [sfa(authority.issueSliceCredential(self.p.ca, user or self.p.alice, slice_ or self.p.s1, now=NOW, **kw))]

    def userCred(self, user=None) -> list[dict]:
        return [sfa(authority.issueUserCredential(self.p.ca, user or self.p.alice, now=NOW))]

    def call(self, method: str, *args: Any, caller: Caller | None = None) -> dict:
        """
        Run one AM method to completion (the in-memory store is synchronous).
        """
        from am.geni.envelope import fromException

        async def run():
            try:
                return await getattr(self.am, method)(caller or self.alice, *args)
            except BaseException as e:
                return fromException(e, method)

        return self.successResultOf(Deferred.fromCoroutine(run()))

    def ok(self, method: str, *args: Any, caller: Caller | None = None) -> Any:
        answer = self.call(method, *args, caller=caller)
        self.assertEqual(answer["code"]["geni_code"], 0, answer["output"])
        return answer["value"]

    def code(self, method: str, *args: Any, caller: Caller | None = None) -> int:
        return self.call(method, *args, caller=caller)["code"]["geni_code"]
