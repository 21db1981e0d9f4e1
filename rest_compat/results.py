# -*- test-case-name: tests.test_rest_results -*-
"""
Results over REST (docs/results.md).

Nodes upload (C{/schedules/<id>/uploads/<path>}): C{GET} says how much of
one version of a file (C{size}, C{sha256}) has arrived; C{PUT} adds the chunk
in the body at C{offset}, checked against C{chunk_sha256}. The last chunk
completes the file: its digest is checked, it moves into the results store
and the core records it. The core decides every rule (its node, its window,
its allowance) through L{IScheduler.admitUpload} and L{IScheduler.recordResult}.

Owners and admins read: C{GET /schedules/<id>/results} lists the files,
C{GET /schedules/<id>/results/<path>} sends one (HTTP ranges), and
C{GET /experiments/<id>/results.tar} streams every file of the experiment as
one tar archive. A path is one URL segment, its slashes escaped (C{%2F}).
"""

from __future__ import annotations

import re
import tarfile
from typing import Any, Optional

from am.core.errors import BadRequest, NotFound
from am.core.interfaces import IStoreTransaction
from am.core.model import ResultFile
from am.core.values import lookup
from am.results.hub import ResultsHub, resultKey
from am.results.spool import BadChunk, OffsetMismatch
from rest_compat import access
from rest_compat.context import Context, HTTPError, Reply
from rest_compat.params import intParam, readBody, recordId, requireParams, text
from rest_compat.streaming import Piece, pump, totalLength

_HEX = re.compile(r"^[0-9a-f]{64}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _hub(ctx: Context) -> ResultsHub:
    if ctx.results is None:
        raise HTTPError(501, "Results are not configured on this controller.")
    return ctx.results


def _schedid(ctx: Context) -> int:
    return recordId(ctx.args[0], "Could not find schedule entry with this id.")


def _file(result: ResultFile) -> dict[str, Any]:
    return {"path": result.path, "size": result.size, "sha256": result.sha256, "time": result.stored}


# -- nodes: uploads ----------------------------------------------------------------


async def _admit(ctx: Context) -> Any:
    requireParams(ctx.params, ["size", "sha256"])
    return await ctx.scheduler.admitUpload(
        _schedid(ctx), ctx.user.id, ctx.args[1], intParam(ctx.params, "size", minimum=0), text(ctx.params, "sha256")
    )


async def _stored(ctx: Context, schedid: int, path: str, sha256: str) -> bool:
    def query(txn: IStoreTransaction) -> bool:
        return any(f.path == path and f.sha256 == sha256 for f in txn.resultFiles(schedid))

    return await ctx.scheduler.read(query)


def _progress(admission: Any, offset: int, complete: bool) -> dict[str, Any]:
    return {"path": admission.path, "size": admission.size, "offset": offset, "complete": complete}


async def uploadStatus(ctx: Context) -> Reply:
    """
    C{GET /schedules/<id>/uploads/<path>?size=&sha256=}: how far this version has come.
    """
    hub = _hub(ctx)
    admission = await _admit(ctx)
    if await _stored(ctx, admission.schedid, admission.path, admission.sha256):
        return Reply(200, _progress(admission, admission.size, True))
    offset = await hub.received(admission.schedid, admission.path, admission.size, admission.sha256)
    return Reply(200, _progress(admission, offset, False))


async def uploadChunk(ctx: Context) -> Reply:
    """
    C{PUT /schedules/<id>/uploads/<path>?size=&sha256=&offset=&chunk_sha256=}
    with the chunk as the body (C{application/octet-stream}).
    """
    hub = _hub(ctx)
    admission = await _admit(ctx)
    requireParams(ctx.params, ["offset", "chunk_sha256"])
    offset = intParam(ctx.params, "offset", minimum=0)
    digest = (text(ctx.params, "chunk_sha256") or "").strip().lower()
    if not _HEX.match(digest):
        raise BadRequest("chunk_sha256 must be 64 hexadecimal digits", parameter="chunk_sha256")
    chunk = readBody(ctx.request, hub.chunkLimit)
    schedid, path, size, sha256 = admission.schedid, admission.path, admission.size, admission.sha256
    if await _stored(ctx, schedid, path, sha256):
        return Reply(200, _progress(admission, size, True))
    try:
        offset = await hub.append(schedid, path, size, sha256, offset, chunk, digest)
    except OffsetMismatch as e:
        raise HTTPError(409, "The upload stands at another offset.", offset=e.offset) from None
    except BadChunk as e:
        raise BadRequest(str(e), parameter="body") from None
    if offset < size:
        return Reply(200, _progress(admission, offset, False))
    try:
        await hub.keep(schedid, path, size, sha256)
    except BadChunk as e:
        raise HTTPError(409, str(e), offset=0) from None
    await ctx.scheduler.recordResult(schedid, ctx.user.id, path, size, sha256)
    await hub.discard(schedid, path)
    return Reply(200, _progress(admission, size, True))


# -- owners and admins: reading -----------------------------------------------------


def _readable(txn: IStoreTransaction, user: Any, schedid: int) -> tuple[Any, list[ResultFile]]:
    schedule = lookup(txn.getSchedule, schedid, "Could not find schedule entry with this id.")
    experiment = txn.getExperiment(schedule.expid)
    access.checkResults(user, experiment.ownerid)
    return schedule, txn.resultFiles(schedule.id)


async def listResults(ctx: Context) -> Reply:
    """
    C{GET /schedules/<id>/results}: the files of one schedule.
    """
    schedid, user = _schedid(ctx), ctx.user

    def query(txn: IStoreTransaction) -> dict[str, Any]:
        schedule, files = _readable(txn, user, schedid)
        return {
            "schedid": schedule.id, "expid": schedule.expid, "nodeid": schedule.nodeid,
            "files": [_file(f) for f in files],
        }

    return Reply(200, await ctx.scheduler.read(query))


def byteRange(header: Optional[bytes], size: int) -> Optional[tuple[int, int]]:
    """
    The C{(first, last)} byte positions one C{Range} header asks for, or
    C{None} for the whole file (no header, several ranges, another unit).

    @raise HTTPError: 416 when the range lies outside the file.
    """
    if header is None:
        return None
    match = _RANGE.match(header.decode("latin-1").strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        first, last = max(0, size - int(last)), size - 1
    else:
        first, last = int(first), min(int(last), size - 1) if last else size - 1
    if first >= size or first > last:
        raise HTTPError(416, "The range is outside the file.", headers={"Content-Range": f"bytes */{size}"})
    return first, last


async def download(ctx: Context) -> Reply:
    """
    C{GET /schedules/<id>/results/<path>}: one file, whole or one byte range.
    """
    hub = _hub(ctx)
    schedid, user, path = _schedid(ctx), ctx.user, ctx.args[1]

    def query(txn: IStoreTransaction) -> ResultFile:
        _, files = _readable(txn, user, schedid)
        for result in files:
            if result.path == path:
                return result
        raise NotFound("No such result file.")

    result = await ctx.scheduler.read(query)
    span = byteRange(ctx.request.getHeader(b"range"), result.size)
    first, last = span if span is not None else (0, result.size - 1)
    length = max(0, last - first + 1)
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(length),
        "Accept-Ranges": "bytes",
        "ETag": f'"{result.sha256}"',
        "X-Checksum-Sha256": result.sha256,
        "Content-Disposition": f'attachment; filename="{_asciiName(result.path)}"',
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{result.size}"
    pieces: list[Piece] = [(resultKey(schedid, path), first, length)]
    return Reply(206 if span else 200, headers=headers, stream=lambda request, lost: pump(request, hub, pieces, lost))


def _asciiName(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)


def tarPieces(members: list[tuple[str, ResultFile]]) -> list[Piece]:
    """
    A tar archive (POSIX pax) of C{(name, file)} members: each header, the
    file's bytes from the store, padding to 512 bytes; two zero blocks end it.
    """
    pieces: list[Piece] = []
    for name, result in members:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = result.size, result.stored, 0o644
        pieces.append(info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"))
        pieces.append((resultKey(result.schedid, result.path), 0, result.size))
        if result.size % 512:
            pieces.append(b"\0" * (512 - result.size % 512))
    pieces.append(b"\0" * 1024)
    return pieces


async def experimentArchive(ctx: Context) -> Reply:
    """
    C{GET /experiments/<id>/results.tar}: every node's results as one tar,
    each file under C{<schedule id>-<node id>/<path>}.
    """
    hub = _hub(ctx)
    expid, user = recordId(ctx.args[0], "Could not find experiment with this id."), ctx.user

    def query(txn: IStoreTransaction) -> list[tuple[str, ResultFile]]:
        experiment = lookup(txn.getExperiment, expid, "Could not find experiment with this id.")
        access.checkResults(user, experiment.ownerid)
        members = []
        for schedule in txn.schedulesOfExperiment(expid):
            members += [(f"{schedule.id}-{schedule.nodeid}/{f.path}", f) for f in txn.resultFiles(schedule.id)]
        return members

    pieces = tarPieces(await ctx.scheduler.read(query))
    headers = {
        "Content-Type": "application/x-tar",
        "Content-Length": str(totalLength(pieces)),
        "Content-Disposition": f'attachment; filename="experiment-{expid}-results.tar"',
    }
    return Reply(200, headers=headers, stream=lambda request, lost: pump(request, hub, pieces, lost))
