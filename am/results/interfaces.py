# -*- test-case-name: tests.test_results_store -*-
"""
The results store: finished, verified files by key. Two implementations:
L{am.results.local.LocalResultStore} (a directory, the default) and
L{am.results.s3.S3ResultStore} (an S3-compatible object store).

Every method blocks (disk or network): callers run them off the reactor
thread (L{am.results.hub.ResultsHub} does).
"""

from __future__ import annotations

from typing import Protocol

from zope.interface import Attribute, Interface


class Reader(Protocol):
    """
    A file being read: C{read(n)} returns at most C{n} bytes, C{b""} at the end.
    """

    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


class IResultStore(Interface):
    """
    Finished result files, each under a key (C{<schedid>/<name>}).
    """

    description = Attribute("Where the store keeps files, for logs (never a secret).")

    def put(key, source):
        """Store the local file at C{source} under C{key}, replacing any earlier one."""

    def open(key, offset, length):
        """A L{Reader} of C{length} bytes of C{key} from C{offset}."""

    def delete(key):
        """Remove C{key}; a missing key is not an error."""

    def exists(key):
        """Whether C{key} is stored."""
