"""
Property: whatever values a client sends to any GENI method (or an unknown
one), the answer is a well-formed v3 struct with an integer geni_code, never
a SERVERERROR, and nothing is booked by a call that failed.
"""

from __future__ import annotations

import xmlrpc.client

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import crypto
from twisted.internet.defer import Deferred
from twisted.web.test.requesthelper import DummyRequest

from am.geni.xmlrpc import SIGNATURES, AggregateManagerResource
from tests.geni_helpers import V3, GeniTestCase, requestRSpec

scalars = st.one_of(
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.booleans(),
    st.text(max_size=40),
    st.sampled_from(["urn:publicid:IDN+geni:marvin+slice+s1", "urn:publicid:IDN+geni:marvin+sliver+1",
                     "geni_start", "2030-01-01T00:00:00Z", "<rspec/>", ""]),
    st.binary(max_size=20).map(xmlrpc.client.Binary),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["geni_type", "geni_version", "geni_value", "geni_rspec_version",
                                         "type", "version", "geni_users", "keys", "urn", "x"]), inner, max_size=4),
    ),
    max_leaves=12,
)


class _Transport:
    def __init__(self, certificate) -> None:
        self._certificate = crypto.X509.from_cryptography(certificate)

    def getPeerCertificate(self):
        return self._certificate


class FuzzTests(GeniTestCase):
    """
    Random arguments through the XML-RPC layer's dispatch.
    """

    def setUp(self) -> None:
        super().setUp()
        self.resource = AggregateManagerResource(self.am)

    def dispatch(self, method: str, args: tuple) -> dict:
        request = DummyRequest([b""])
        request.transport = _Transport(self.p.alice.certificate)
        d = Deferred.fromCoroutine(self.resource._call(request, method, args))
        return self.successResultOf(d)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(method=st.sampled_from(sorted(SIGNATURES) + ["Bogus"]), args=st.lists(values, max_size=5))
    def test_alwaysAStruct(self, method: str, args: list) -> None:
        answer = self.dispatch(method, tuple(args))
        assert set(answer) >= {"code", "value", "output"}, answer
        assert isinstance(answer["code"]["geni_code"], int)
        assert answer["code"]["geni_code"] != 5, answer["output"]
        assert isinstance(answer["output"], str)
        xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=False)
        booked = self.store.run(lambda txn: txn.countSchedules())
        assert booked == 0

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(options=st.dictionaries(st.sampled_from(["geni_best_effort", "geni_start_time", "geni_end_time",
                                                    "geni_users", "geni_rspec_version"]), values, max_size=3))
    def test_allocateOptions(self, options: dict) -> None:
        """
        Valid credentials and RSpec, hostile options: a struct, and when it
        succeeds exactly one sliver, which is then deleted.
        """
        answer = self.dispatch("Allocate", (self.s1, self.sliceCred(), requestRSpec(["1"]), options))
        assert answer["code"]["geni_code"] != 5, answer["output"]
        if answer["code"]["geni_code"] == 0:
            assert len(answer["value"]["geni_slivers"]) == 1
            assert self.dispatch("Delete", ([self.s1], self.sliceCred(), {}))["code"]["geni_code"] == 0
        self.dispatch("Describe", ([self.s1], self.sliceCred(), V3))
