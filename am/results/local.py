# -*- test-case-name: tests.test_results_store -*-
"""
Results in a local directory (the default store): one file per key, written
to a temporary name, synced and renamed, so a crash leaves the old file or
the new one. A key's file name is a digest of the key, never a path the
node chose, so no upload can name a file outside the directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from typing import Any

from zope.interface import implementer

from am.results.interfaces import IResultStore


class _Slice:
    """
    A reader of C{length} bytes of an open file.
    """

    def __init__(self, handle: Any, length: int) -> None:
        self._handle, self._left = handle, length

    def read(self, size: int) -> bytes:
        data = self._handle.read(min(size, self._left)) if self._left > 0 else b""
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()


def fsyncDirectory(directory: str) -> None:
    """
    Make a rename or a new file in C{directory} durable.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@implementer(IResultStore)
class LocalResultStore:
    """
    @ivar directory: where the files are (created, mode 0700).
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.description = f"directory {directory}"
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def _path(self, key: str) -> str:
        schedid, _, name = key.partition("/")
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
        return os.path.join(self.directory, str(int(schedid)), digest)

    def put(self, key: str, source: str) -> None:
        target = self._path(key)
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".put-", dir=os.path.dirname(target))
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
                shutil.copyfileobj(data, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
            fsyncDirectory(os.path.dirname(target))
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise

    def open(self, key: str, offset: int, length: int) -> _Slice:
        handle = open(self._path(key), "rb")
        handle.seek(offset)
        return _Slice(handle, length)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))
