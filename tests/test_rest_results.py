"""
Results over REST (rest_compat/results.py) through the real site, every
answer checked against the OpenAPI document: chunked, resumable uploads by
the task's node, listings, ranged downloads and the experiment's tar.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from urllib.parse import quote, urlencode

import pytest

from am.results.hub import ResultsHub
from am.results.local import LocalResultStore
from am.results.spool import Spool
from rest_compat.testing import RESTHarness, book, populate


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class World:
    def __init__(self, tmp: str, storage: int = 10_000) -> None:
        self.hub = ResultsHub(LocalResultStore(f"{tmp}/store"), Spool(f"{tmp}/spool"))
        self.h = RESTHarness(results=self.hub)
        self.people = populate(self.h)
        self.expid = book(self.h, self.people.alice, options={"nodes": "1", "storage": storage})
        self.sid = self.h.run(lambda txn: txn.schedulesOfExperiment(self.expid)[0].id)
        self.h.request("PUT", "/v1/resources/1", self.people.node1)
        self.h.request("PUT", f"/v1/schedules/{self.sid}", self.people.node1, form={"status": "deployed"})

    def url(self, path: str, kind: str = "uploads", **query: object) -> str:
        tail = f"?{urlencode(query)}" if query else ""
        return f"/v1/schedules/{self.sid}/{kind}/{quote(path, safe='')}{tail}"

    def put(self, path: str, data: bytes, offset: int, chunk: bytes, user=None, digest=None):
        return self.h.request(
            "PUT", self.url(path, size=len(data), sha256=sha(data), offset=offset,
                            chunk_sha256=digest or sha(chunk)),
            user or self.people.node1, body=chunk, headers={"Content-Type": "application/octet-stream"},
        )

    def status(self, path: str, data: bytes, user=None):
        return self.h.request("GET", self.url(path, size=len(data), sha256=sha(data)), user or self.people.node1)

    def upload(self, path: str, data: bytes, chunk: int = 1000) -> None:
        offset = 0
        while True:
            response = self.put(path, data, offset, data[offset:offset + chunk])
            assert response.code == 200, response.body
            offset = response.json["offset"]
            if response.json["complete"]:
                return


@pytest.fixture
def world(tmp_path) -> World:
    return World(str(tmp_path))


def test_chunkedResumableUpload(world: World) -> None:
    """
    Chunks arrive in order; the node asks where it stands and resumes there;
    a chunk at the wrong offset is answered with the right one; the last
    chunk completes the file, which is then listed.
    """
    data = bytes(range(256)) * 10
    assert world.status("dir/a.bin", data).json == {"path": "dir/a.bin", "size": 2560, "offset": 0, "complete": False}
    assert world.put("dir/a.bin", data, 0, data[:1000]).json["offset"] == 1000
    assert world.status("dir/a.bin", data).json["offset"] == 1000
    wrong = world.put("dir/a.bin", data, 0, data[:1000])
    assert wrong.code == 409 and wrong.json["offset"] == 1000
    bad = world.put("dir/a.bin", data, 1000, data[1000:2000], digest="0" * 64)
    assert bad.code == 400
    assert world.put("dir/a.bin", data, 1000, data[1000:]).json == {
        "path": "dir/a.bin", "size": 2560, "offset": 2560, "complete": True}
    assert world.status("dir/a.bin", data).json["complete"] is True
    listing = world.h.request("GET", f"/v1/schedules/{world.sid}/results", world.people.alice).json
    assert listing["files"] == [{"path": "dir/a.bin", "size": 2560, "sha256": sha(data), "time": 1_000_000_000}]
    assert (listing["nodeid"], listing["expid"]) == ("1", world.expid)


def test_wholeFileChecked(world: World) -> None:
    """
    Chunks that each match their digest but not the declared file: the
    upload is dropped and the node told to start again (offset 0).
    """
    data, other = b"a" * 100, b"b" * 100
    response = world.h.request(
        "PUT", world.url("x", size=100, sha256=sha(data), offset=0, chunk_sha256=sha(other)),
        world.people.node1, body=other,
    )
    assert response.code == 409 and response.json["offset"] == 0
    assert world.status("x", data).json["offset"] == 0
    assert world.h.request("GET", f"/v1/schedules/{world.sid}/results", world.people.alice).json["files"] == []


def test_rulesAtTheDoor(world: World) -> None:
    """
    Only the task's node uploads, within the allowance, with a sane path.
    """
    data = b"x" * 10
    assert world.put("a", data, 0, data, user=world.people.node2).code == 403
    assert world.put("a", data, 0, data, user=world.people.alice).code == 403
    big = b"x" * 10_001
    refused = world.status("big", big)
    assert refused.code == 409 and refused.json["allowance"] == 10_000
    assert world.status("../etc/passwd", data).code == 400
    assert world.h.request("GET", world.url("a", size=1), world.people.node1).code == 400


def test_downloadWithRanges(world: World) -> None:
    """
    Owner and admin download whole files and single ranges; others may not.
    """
    data = bytes(range(256)) * 8
    world.upload("r.bin", data)
    url = world.url("r.bin", kind="results")
    whole = world.h.request("GET", url, world.people.alice)
    assert whole.code == 200 and whole.body == data
    assert whole.header("x-checksum-sha256") == sha(data)
    part = world.h.request("GET", url, world.people.admin, headers={"Range": "bytes=10-19"})
    assert part.code == 206 and part.body == data[10:20]
    assert part.header("content-range") == f"bytes 10-19/{len(data)}"
    tail = world.h.request("GET", url, world.people.alice, headers={"Range": "bytes=-5"})
    assert tail.body == data[-5:]
    outside = world.h.request("GET", url, world.people.alice, headers={"Range": "bytes=99999-"})
    assert outside.code == 416
    assert world.h.request("GET", url, world.people.bob).code == 403
    assert world.h.request("GET", url, world.people.node1).code == 403
    assert world.h.request("GET", world.url("nope", kind="results"), world.people.alice).code == 404
    head = world.h.request("HEAD", url, world.people.alice)
    assert head.code == 200 and head.body == b""


def test_experimentTar(world: World) -> None:
    """
    The experiment's tar holds every file under <schedule>-<node>/, intact.
    """
    files = {"a.txt": b"hello\n", "deep/er/b.bin": bytes(range(256)) * 3, "empty": b""}
    for path, data in files.items():
        world.upload(path, data, chunk=500)
    response = world.h.request("GET", f"/v1/experiments/{world.expid}/results.tar", world.people.alice)
    assert response.code == 200
    assert response.header("content-length") == str(len(response.body))
    with tarfile.open(fileobj=io.BytesIO(response.body)) as archive:
        found = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    assert found == {f"{world.sid}-1/{p}": d for p, d in files.items()}
    assert world.h.request("GET", f"/v1/experiments/{world.expid}/results.tar", world.people.bob).code == 403


def test_notConfigured() -> None:
    """
    Without a results store the routes say so (501).
    """
    h = RESTHarness()
    people = populate(h)
    expid = book(h, people.alice, options={"nodes": "1"})
    assert h.request("GET", f"/v1/experiments/{expid}/results.tar", people.alice).code == 501
