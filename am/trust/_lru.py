# -*- test-case-name: tests.test_trust_verifier -*-
"""
A small bounded mapping, least recently used out first, safe to share
between threads.

The trust layer memoises pure functions of exact inputs with it (a PEM
text's certificates, a certificate's xmlsec key, a chain's verification
window), so that the same user or authority costs its parsing once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """
    At most C{size} entries; reading an entry makes it the most recent.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        # Lookups that found an entry and that did not (for the controller's metrics).
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        """
        The value for C{key}, or C{None}.
        """
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return value

    def put(self, key: K, value: V) -> V:
        """
        Remember C{value} for C{key}, forgetting the oldest entries beyond
        the bound; returns C{value}.
        """
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def memo(self, key: K, compute: Callable[[], V]) -> V:
        """
        The value for C{key}, computed (and remembered) if missing.
        Exceptions from C{compute} propagate and nothing is remembered.
        """
        value = self.get(key)
        if value is None:
            value = self.put(key, compute())
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """
        Forget everything.
        """
        with self._lock:
            self._entries.clear()
