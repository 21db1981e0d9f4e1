"""
The results stores behind one interface (a local directory, and S3 against
a local S3-compatible server), the spool of uploads in progress, and the
controller's results configuration.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterator

import pytest
from zope.interface.verify import verifyObject

from am.ctl.resultsconfig import ConfigError, ResultsConfig, parseResults
from am.ctl.resultsconfig import makeHub
from am.results.interfaces import IResultStore
from am.results.local import LocalResultStore
from am.results.s3 import S3ResultStore
from am.results.spool import BadChunk, OffsetMismatch, Spool
from tests.s3server import ACCESS, REGION, SECRET, S3Server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def store(request: Any, tmp_path: Any) -> Any:
    if request.param == "local":
        return LocalResultStore(str(tmp_path / "results"))
    server = request.getfixturevalue("s3")
    bucket = server.bucket(f"b{len(os.listdir(tmp_path))}{id(request)}")
    return S3ResultStore(bucket, server.url, REGION, ACCESS, SECRET, prefix="r/")


def read(store: Any, key: str, offset: int, length: int) -> bytes:
    reader = store.open(key, offset, length)
    try:
        chunks = []
        while True:
            data = reader.read(7)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    finally:
        reader.close()


def test_storeContract(store: Any, tmp_path: Any) -> None:
    """
    Put, ranged reads, replace, delete: the same for every store.
    """
    verifyObject(IResultStore, store)
    source = tmp_path / "f"
    source.write_bytes(b"0123456789" * 5)
    store.put("3/dir/a.txt", str(source))
    assert store.exists("3/dir/a.txt") and not store.exists("3/other")
    assert read(store, "3/dir/a.txt", 0, 50) == b"0123456789" * 5
    assert read(store, "3/dir/a.txt", 12, 5) == b"23456"
    assert read(store, "3/dir/a.txt", 0, 0) == b""
    source.write_bytes(b"new")
    store.put("3/dir/a.txt", str(source))
    assert read(store, "3/dir/a.txt", 0, 3) == b"new"
    store.delete("3/dir/a.txt")
    store.delete("3/dir/a.txt")
    assert not store.exists("3/dir/a.txt")


def test_localKeysNeverEscape(tmp_path: Any) -> None:
    """
    The local store names files by digest: a hostile key stays inside.
    """
    store = LocalResultStore(str(tmp_path / "results"))
    source = tmp_path / "f"
    source.write_bytes(b"x")
    store.put("1/../../escape", str(source))
    assert not (tmp_path / "escape").exists()
    assert [p.parent.name for p in (tmp_path / "results").rglob("*") if p.is_file()] == ["1"]


def test_spool(tmp_path: Any) -> None:
    """
    Chunks append at the offset the spool stands at, each checked; the
    offset survives a new spool on the same directory (a restart); a new
    version of the file starts over; the whole file is checked at the end.
    """
    data = b"abcdefghij" * 3
    digest = hashlib.sha256(data).hexdigest()

    def chunkSum(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()

    spool = Spool(str(tmp_path))
    assert spool.append(1, "p", 30, digest, 0, data[:10], chunkSum(data[:10])) == 10
    with pytest.raises(OffsetMismatch) as caught:
        spool.append(1, "p", 30, digest, 0, data[:10], chunkSum(data[:10]))
    assert caught.value.offset == 10
    with pytest.raises(BadChunk):
        spool.append(1, "p", 30, digest, 10, data[10:20], "0" * 64)
    with pytest.raises(BadChunk):
        spool.append(1, "p", 30, digest, 10, data[10:] + b"!", chunkSum(data[10:] + b"!"))
    again = Spool(str(tmp_path))
    assert again.received(1, "p", 30, digest) == 10
    with pytest.raises(BadChunk):
        again.complete(1, "p", 30, digest)
    assert again.append(1, "p", 30, digest, 10, data[10:], chunkSum(data[10:])) == 30
    with open(again.complete(1, "p", 30, digest), "rb") as f:
        assert f.read() == data
    assert again.received(1, "p", 5, chunkSum(b"hello")) == 0  # another version: starts over
    assert again.received(1, "p", 30, digest) == 0
    wrong = hashlib.sha256(b"other").hexdigest()
    assert again.append(2, "q", 5, wrong, 0, b"hello", chunkSum(b"hello")) == 5
    with pytest.raises(BadChunk):
        again.complete(2, "q", 5, wrong)
    assert again.received(2, "q", 5, wrong) == 0
    empty = hashlib.sha256(b"").hexdigest()
    with open(again.complete(3, "e", 0, empty), "rb") as f:
        assert f.read() == b""


def test_configuration(tmp_path: Any) -> None:
    """
    Results default to a local store beside the SQLite file; PostgreSQL
    needs a directory named; s3 needs a bucket; bad values are one message.
    """
    db = str(tmp_path / "m.db")
    config = parseResults({}, str(tmp_path), db)
    assert (config.store, config.directory, config.spool) == (
        "local", str(tmp_path / "results"), str(tmp_path / "results" / "spool"))
    assert parseResults({}, str(tmp_path), "postgresql://x/y") == ResultsConfig(store="off")
    assert parseResults({"results": {"directory": "r"}}, str(tmp_path), "postgresql://x/y").store == "local"
    with pytest.raises(ConfigError, match="results.store"):
        parseResults({"results": {"store": "ftp"}}, str(tmp_path), db)
    with pytest.raises(ConfigError, match="results.s3.bucket"):
        parseResults({"results": {"store": "s3"}}, str(tmp_path), db)
    with pytest.raises(ConfigError, match="unknown key.*oops"):
        parseResults({"results": {"oops": 1}}, str(tmp_path), db)
    s3config = parseResults(
        {"results": {"store": "s3", "s3": {"bucket": "b", "endpoint": "http://h", "secret_key_file": "nope"}}},
        str(tmp_path), db,
    )
    with pytest.raises(ConfigError, match="secret_key_file"):
        makeHub(s3config, None)
    assert makeHub(ResultsConfig(), None) is None
