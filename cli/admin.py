# -*- test-case-name: tests.test_cli_e2e -*-
"""
The operator's commands (an admin certificate): C{users add|list|rekey|quota|delete}
and C{node tag|maintenance|pair}. Users are named by id or by name.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import ssl
from typing import Any

from cli.times import formatDuration, formatSize, parseDuration, parseSize

__all__ = ["register", "fingerprintOfFile"]

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    users = commands.add_parser("users", help="Manage users (admin).", description="Manage users (admin).")
    actions = users.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(handler=handler)
        return parser

    add("list", listUsers, "Every user with role, project and quotas.")
    new = add("add", addUser, "Create a user for a certificate.")
    new.add_argument("name")
    new.add_argument("--role", default="user", choices=("user", "admin", "node"))
    new.add_argument("--project", default="")
    new.add_argument("--urn", help="GENI URN of the user, if any")
    _identity(new)
    rekey = add("rekey", rekeyUser, "Give a user a new certificate.")
    rekey.add_argument("user", help="id or name")
    _identity(rekey)
    quota = add("quota", setQuota, "Set a user's quotas.")
    quota.add_argument("user", help="id or name")
    quota.add_argument("--time", metavar="DURATION", help="node time, e.g. 100d, 500h")
    quota.add_argument("--data", metavar="SIZE", help="traffic, e.g. 100G")
    quota.add_argument("--storage", metavar="SIZE", help="storage, e.g. 200G")
    delete = add("delete", deleteUser, "Invalidate a user: refused everywhere from now on.")
    delete.add_argument("user", help="id or name")

    node = commands.add_parser("node", help="Manage nodes (admin).", description="Manage nodes (admin).")
    nodeActions = node.add_subparsers(dest="action", metavar="ACTION", required=True)

    def addNode(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        parser = nodeActions.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(handler=handler)
        parser.add_argument("node", help="node id")
        return parser

    tag = addNode("tag", tagNode, "Replace a node's admin tags.")
    tag.add_argument("tags", help="tag:value,tag:value ('' clears them)")
    maintenance = addNode("maintenance", maintainNode, "Take a node out of service (on) or back (off).")
    maintenance.add_argument("state", choices=("on", "off"))
    pair = addNode("pair", pairNode, "Make the node the head of a pair with TAIL, or --delete its pair.")
    which = pair.add_mutually_exclusive_group(required=True)
    which.add_argument("tail", nargs="?", help="the tail node's id")
    which.add_argument("--delete", action="store_true", help="remove the node's pair")


def _identity(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--user-cert", dest="certificate", metavar="PEM", help="the user's certificate file")
    which.add_argument("--fingerprint", metavar="SHA1", help="its SHA-1 fingerprint (40 hex digits, colons allowed)")


def fingerprintOfFile(path: str) -> str:
    """
    The REST API's name for a certificate: SHA-1 of the DER of the first
    certificate in the PEM file, lowercase hex.
    """
    from cli.main import UsageError

    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    found = _PEM.search(text)
    if not found:
        raise UsageError(f"{path} holds no PEM certificate")
    try:
        der = ssl.PEM_cert_to_DER_cert(found.group(0))
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None
    return hashlib.sha1(der).hexdigest()


def _fingerprint(args: argparse.Namespace) -> str:
    from cli.main import UsageError

    if args.certificate:
        return fingerprintOfFile(args.certificate)
    value = args.fingerprint.replace(":", "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{40}", value):
        raise UsageError(f"not a SHA-1 fingerprint: {args.fingerprint!r}")
    return value


def _userId(run: Any, ref: str) -> int:
    from cli.main import UsageError

    if ref.isdigit():
        return int(ref)
    found = [u for u in run.client.get("users") if u["name"] == ref]
    if len(found) != 1:
        raise UsageError(f"{'no' if not found else 'more than one'} user named {ref!r}; give the id")
    return found[0]["id"]


def _userRows(users: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [u["id"], u["name"], u["role"], u["project"], formatDuration(u["quota_time"]),
         formatSize(u["quota_data"]), formatSize(u["quota_storage"]), u["ssl_id"]]
        for u in sorted(users, key=lambda u: u["id"])
    ]


USER_HEADERS = ["ID", "NAME", "ROLE", "PROJECT", "TIME", "DATA", "STORAGE", "FINGERPRINT"]


def listUsers(run: Any, args: argparse.Namespace) -> None:
    users = run.client.get("users")
    run.emit(users, USER_HEADERS, _userRows(users))


def _showUser(run: Any, userid: int, answer: dict[str, Any]) -> None:
    users = run.client.get(f"users/{userid}")
    if run.json:
        run.dump({**answer, "user": users[0]})
        return
    run.out.write(answer.get("message", "Done.") + "\n")
    run.emit(users, USER_HEADERS, _userRows(users))


def addUser(run: Any, args: argparse.Namespace) -> None:
    body = {"name": args.name, "role": args.role, "project": args.project, "ssl": _fingerprint(args)}
    if args.urn:
        body["urn"] = args.urn
    answer = run.client.call("POST", "users", body=body)
    _showUser(run, answer["id"], answer)


def rekeyUser(run: Any, args: argparse.Namespace) -> None:
    userid = _userId(run, args.user)
    answer = run.client.call("PUT", f"users/{userid}", body={"ssl": _fingerprint(args)})
    _showUser(run, userid, answer)


def setQuota(run: Any, args: argparse.Namespace) -> None:
    from cli.main import UsageError

    body: dict[str, int] = {}
    if args.time is not None:
        body["time"] = parseDuration(args.time)
    if args.data is not None:
        body["data"] = parseSize(args.data)
    if args.storage is not None:
        body["storage"] = parseSize(args.storage)
    if not body:
        raise UsageError("give at least one of --time, --data, --storage")
    userid = _userId(run, args.user)
    answer = run.client.call("PUT", f"users/{userid}", body=body)
    _showUser(run, userid, answer)


def deleteUser(run: Any, args: argparse.Namespace) -> None:
    userid = _userId(run, args.user)
    answer = run.client.call("DELETE", f"users/{userid}")
    if run.json:
        run.dump(answer)
    else:
        run.out.write(f"User {userid}: {answer.get('message', 'invalidated.')}\n")


def _nodeCall(run: Any, node: str, body: dict[str, str]) -> None:
    answer = run.client.call("PUT", f"resources/{node}", body=body)
    if run.json:
        run.dump(answer)
    else:
        run.out.write(f"Node {node}: {answer.get('message', 'done.')}\n")


def tagNode(run: Any, args: argparse.Namespace) -> None:
    _nodeCall(run, args.node, {"type": args.tags})


def maintainNode(run: Any, args: argparse.Namespace) -> None:
    _nodeCall(run, args.node, {"status": "maintenance" if args.state == "on" else "active"})


def pairNode(run: Any, args: argparse.Namespace) -> None:
    _nodeCall(run, args.node, {"pair": "delete" if args.delete else args.tail})
