"""
Benchmark of credential verification in the trust layer (not a test).

One slice credential from marvin-authority (RSA-2048, RSA-SHA256, signer =
the root CA, owner and target GIDs with their chains):

  - cold: a document the AM has not seen before (signature, three chain
    checks, parsing); "warm chains" is the usual case of a running AM that
    has seen the same user, slice and authority before, "fresh" a new
    L{Trust} per document (nothing cached at all);
  - delegated: a credential delegated once (two signatures), cold;
  - cached: the same document again (digest lookup and expiry check);
  - authorize: C{Trust.authorize} for Allocate, cold and cached.

Targets: cold under 1 ms, cached under 50 microseconds (median).

Run: python bench/bench_credentials.py [--documents N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from am.devtools import authority  # noqa: E402
from am.trust.gate import Trust  # noqa: E402


def summary(name: str, samples: list[float], target: float | None = None) -> str:
    samples = sorted(samples)
    median = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    verdict = ""
    if target is not None:
        verdict = f"  target median < {target * 1e6:.0f} us: {'met' if median < target else 'MISSED'}"
    return (
        f"{name:<34} n={len(samples):<6} median {median * 1e6:8.1f} us   "
        f"p99 {p99 * 1e6:8.1f} us{verdict}"
    )


def timeEach(f: object, items: list[object]) -> list[float]:
    samples = []
    for item in items:
        start = time.perf_counter()
        f(item)  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--documents", type=int, default=300, help="distinct credentials per cold run")
    parser.add_argument("--repeats", type=int, default=20000, help="cached verifications")
    args = parser.parse_args()

    ca = authority.makeCA(None, "geni:bench")
    am = authority.makeAM(None, ca, "am.bench.example")
    alice = authority.makeUser(None, ca, "alice")
    bob = authority.makeUser(None, ca, "bob")
    s1 = authority.makeSlice(None, ca, "s1")
    start = time.perf_counter()
    documents = [
        authority.issueSliceCredential(ca, alice, s1, delegatable=True) for _ in range(args.documents)
    ]
    issue = (time.perf_counter() - start) / args.documents
    delegated = [authority.delegate(d, alice, bob, privileges=["control"]) for d in documents[:100]]
    print(f"credential size {len(documents[0])} bytes; issuing one takes {issue * 1e3:.2f} ms")

    def newTrust() -> Trust:
        return Trust([ca.certificate], am.urn)

    trust = newTrust()
    trust.verifyCredential(authority.issueSliceCredential(ca, alice, s1))  # warm the chain cache
    cold = timeEach(trust.verifyCredential, documents)

    fresh = []
    for document in documents[: min(100, len(documents))]:
        other = newTrust()
        start = time.perf_counter()
        other.verifyCredential(document)
        fresh.append(time.perf_counter() - start)

    trust2 = newTrust()
    trust2.verifyCredential(delegated[0])
    coldDelegated = timeEach(trust2.verifyCredential, delegated[1:])

    one = documents[0]
    cached = timeEach(trust.verifyCredential, [one] * args.repeats)

    trust3 = newTrust()
    trust3.verifyCredential(authority.issueSliceCredential(ca, alice, s1))
    allocate = lambda d: trust3.authorize(alice.urn, "Allocate", s1.urn, [  # noqa: E731
        {"geni_type": "geni_sfa", "geni_version": "3", "geni_value": d}
    ])
    authorizeCold = timeEach(allocate, documents)
    authorizeCached = timeEach(allocate, [one] * args.repeats)

    print(summary("verify, cold (warm chains)", cold, 1e-3))
    print(summary("verify, cold (fresh Trust)", fresh))
    print(summary("verify delegated, cold", coldDelegated))
    print(summary("verify, cached", cached, 50e-6))
    print(summary("authorize Allocate, cold", authorizeCold))
    print(summary("authorize Allocate, cached", authorizeCached, 50e-6))


if __name__ == "__main__":
    main()
