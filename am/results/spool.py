# -*- test-case-name: tests.test_results_store -*-
"""
Uploads in progress, on the controller's disk: each file being uploaded is a
C{.part} file that grows chunk by chunk (each chunk checked against its
SHA-256 and synced before it is acknowledged) and a C{.meta} file naming the
whole file's declared size and digest. The received offset is the C{.part}
file's size, so it survives a restart of the controller; a node resumes by
asking for it. A different size or digest for the same path starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Optional

from am.results.local import fsyncDirectory


class OffsetMismatch(Exception):
    """
    A chunk that does not start where the upload stands (HTTP 409 with the offset).
    """

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


class BadChunk(Exception):
    """
    A chunk (or a whole file) whose bytes are not what the node declared.
    """


class Spool:
    """
    @ivar directory: the spool directory (created, mode 0700).
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _stem(self, schedid: int, path: str) -> str:
        return os.path.join(self.directory, str(int(schedid)), hashlib.sha256(path.encode("utf-8")).hexdigest())

    def _lock(self, stem: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(stem, threading.Lock())

    def _meta(self, stem: str) -> Optional[dict]:
        try:
            with open(stem + ".meta") as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def _received(self, stem: str, size: int, sha256: str) -> int:
        meta = self._meta(stem)
        if meta is None or meta.get("size") != size or meta.get("sha256") != sha256:
            if meta is not None:
                self._remove(stem)
            return 0
        try:
            return os.path.getsize(stem + ".part")
        except FileNotFoundError:
            return 0

    def received(self, schedid: int, path: str, size: int, sha256: str) -> int:
        """
        How many bytes of this version of the file are here.
        """
        stem = self._stem(schedid, path)
        with self._lock(stem):
            return self._received(stem, size, sha256)

    def append(
        self, schedid: int, path: str, size: int, sha256: str, offset: int, chunk: bytes, chunkDigest: str
    ) -> int:
        """
        Add C{chunk} at C{offset}; fires with the new offset once it is on disk.

        @raise OffsetMismatch: the upload stands elsewhere.
        @raise BadChunk: the chunk's digest differs, or it goes past C{size}.
        """
        stem = self._stem(schedid, path)
        with self._lock(stem):
            current = self._received(stem, size, sha256)
            if offset != current:
                raise OffsetMismatch(current)
            if offset + len(chunk) > size:
                raise BadChunk(f"the chunk ends past the declared size ({size} bytes)")
            if hashlib.sha256(chunk).hexdigest() != chunkDigest:
                raise BadChunk("the chunk's sha256 does not match its bytes")
            if not chunk:
                return current
            if self._meta(stem) is None:
                os.makedirs(os.path.dirname(stem), mode=0o700, exist_ok=True)
                with open(stem + ".meta", "w") as f:
                    json.dump({"path": path, "size": size, "sha256": sha256}, f)
                    f.flush()
                    os.fsync(f.fileno())
                fsyncDirectory(os.path.dirname(stem))
            with open(stem + ".part", "ab") as f:
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            return current + len(chunk)

    def complete(self, schedid: int, path: str, size: int, sha256: str) -> str:
        """
        The whole file, checked: the path of its C{.part} file.

        @raise BadChunk: not all there, or its digest differs (the upload is
            dropped: the node starts again).
        """
        stem = self._stem(schedid, path)
        with self._lock(stem):
            if self._received(stem, size, sha256) != size:
                raise BadChunk("the upload is not complete")
            if size == 0 and not os.path.exists(stem + ".part"):
                os.makedirs(os.path.dirname(stem), mode=0o700, exist_ok=True)
                open(stem + ".part", "wb").close()
            digest = hashlib.sha256()
            with open(stem + ".part", "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != sha256:
                self._remove(stem)
                raise BadChunk("the file's sha256 does not match what arrived; upload it again")
            return stem + ".part"

    def discard(self, schedid: int, path: str) -> None:
        """
        Drop the upload of C{path}, whatever version.
        """
        stem = self._stem(schedid, path)
        with self._lock(stem):
            self._remove(stem)

    def _remove(self, stem: str) -> None:
        for suffix in (".part", ".meta"):
            try:
                os.unlink(stem + suffix)
            except FileNotFoundError:
                pass
