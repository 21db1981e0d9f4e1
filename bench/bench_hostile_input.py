"""
How fast hostile or large documents are refused or rendered (not a test).

The unit tests check what happens to these inputs (refused, with which
reason, in bounded memory); this prints how long it takes, which is a
machine-dependent figure and so lives here:

  - SFA credential parsing: a billion-laughs DTD, a document over the size
    bound, 5,000 levels of nesting (target: each refused under 50 ms);
  - RSpec parsing: billion laughs and a quadratic blow-up (under 0.5 s), a
    megabyte of whitespace or processing instructions before the root (the
    DOCTYPE scan, under 1 s);
  - the advertisement of 500 nodes with 10,000 leases (under 3 s).

Run: python bench/bench_hostile_input.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from am.testing import demoNodes  # noqa: E402
from am.trust.credential import MAX_BYTES, parseSignedCredential  # noqa: E402
from rspec.advertisement import advertisement  # noqa: E402
from rspec.xml import MAX_SIZE, parseDocument  # noqa: E402

NOW = 1_000_080_000
AUTH = "urn:publicid:IDN+bench+authority+am"


def laughs(levels: int, root: str) -> str:
    parts = ['<!DOCTYPE lolz [<!ENTITY lol0 "lol">']
    for i in range(1, levels):
        parts.append(f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">')
    parts.append(f"]><{root}>&lol{levels - 1};</{root}>")
    return "".join(parts)


def quadratic(size: int = 100_000, references: int = 9_000) -> str:
    return f'<!DOCTYPE q [<!ENTITY a "{"x" * size}">]><rspec>{"&a;" * references}</rspec>'


def timeIt(f: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            f()
        except Exception:
            pass
        samples.append(time.perf_counter() - started)
    return samples


def line(name: str, samples: list[float], target: float) -> str:
    median = statistics.median(samples)
    verdict = "met" if median < target else "MISSED"
    return f"{name:<48} median {median * 1e3:9.3f} ms  max {max(samples) * 1e3:9.3f} ms  target < {target * 1e3:.0f} ms: {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--repeat", type=int, default=20)
    n = parser.parse_args().repeat
    many = demoNodes(500, NOW)
    leases = [(i, str(1 + i % 500), NOW + 3600 * (i // 500), NOW + 3600 * (i // 500) + 1800) for i in range(10_000)]
    cases = [
        ("credential: billion laughs", lambda: parseSignedCredential(laughs(10, "signed-credential")), 0.05),
        ("credential: over the size bound", lambda: parseSignedCredential("<a>" + "x" * MAX_BYTES + "</a>"), 0.05),
        ("credential: 5,000 levels deep", lambda: parseSignedCredential("<a>" * 5000 + "</a>" * 5000), 0.05),
        ("rspec: billion laughs", lambda: parseDocument(laughs(10, "rspec")), 0.5),
        ("rspec: quadratic blow-up", lambda: parseDocument(quadratic()), 0.5),
        ("rspec: 1 MB of whitespace before the root", lambda: parseDocument(b" " * (MAX_SIZE - 10) + b"<a/>"), 1.0),
        ("rspec: 1 MB of processing instructions", lambda: parseDocument(b"<?p?>" * (MAX_SIZE // 6) + b"<a/>"), 1.0),
    ]
    for name, f, target in cases:
        print(line(name, timeIt(f, n), target))
    print(line("advertisement: 500 nodes, 10,000 leases", timeIt(
        lambda: advertisement(many, leases, AUTH, NOW, NOW + 600), max(3, n // 5)), 3.0))


if __name__ == "__main__":
    main()
