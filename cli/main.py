# -*- test-case-name: tests.test_cli_e2e -*-
"""
C{marvin}: argument parsing, settings, output and exit codes; the commands
live in L{cli.user} (experimenters) and L{cli.admin} (operators).

Exit codes: 0 success; 1 the server refused or failed (its message on
stderr, its body on stdout with C{--json}); 2 bad command line (a time, a
duration, a flag); 3 no usable settings or no answer from the server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import Any, Callable, Mapping, Optional, Sequence, TextIO

import attrs

from cli.client import APIError, Client, Unreachable
from cli.config import ConfigError, loadSettings
from cli.filters import FilterError
from cli.tables import renderTable
from cli.times import TimeError, localZone

__all__ = ["Run", "main", "UsageError"]

OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3


class UsageError(Exception):
    """
    A command line that makes no sense; exit code 2.
    """


@attrs.define
class Run:
    """
    What a command works with: the client, where to write, and the clock.
    """

    client: Client
    out: TextIO
    err: TextIO
    json: bool
    zone: Any
    now: Callable[[], datetime]
    sleep: Callable[[float], None]

    def emit(self, document: Any, headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "(none)") -> None:
        """
        The JSON C{document} with C{--json}, else the table.
        """
        if self.json:
            self.dump(document)
        else:
            self.out.write(renderTable(headers, rows, empty))

    def dump(self, document: Any) -> None:
        self.out.write(json.dumps(document, indent=2, sort_keys=True) + "\n")

    def say(self, text: str) -> None:
        """
        A line for people: on stdout without C{--json}, on stderr with it (so
        stdout stays one JSON document).
        """
        (self.err if self.json else self.out).write(text + "\n")


def _connection(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("connection (also MARVIN_URL, MARVIN_CERT, MARVIN_KEY, MARVIN_CA, MARVIN_CONFIG)")
    group.add_argument("--config", default=default, help="settings file (default ~/.config/marvin/cli.yaml)")
    group.add_argument("--url", default=default, help="controller URL, e.g. https://marvin.example.org")
    group.add_argument("--cert", default=default, help="your client certificate (PEM)")
    group.add_argument("--key", default=default, help="its key, when not in the certificate file")
    group.add_argument("--ca", default=default, help="CA roots for the controller's certificate (PEM)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print the server's JSON instead of tables")


def buildParser() -> argparse.ArgumentParser:
    from cli import admin, results, user

    parser = argparse.ArgumentParser(
        prog="marvin",
        description="Book and follow experiments on a Marvin testbed, and manage it as an admin.",
        epilog="Times: now, 'in 10 min', 'tomorrow 9:00', 2026-12-24T10:00 (your time zone unless given). "
        "Durations: 30m, 1h30m, '2 hours', 1:30. Exit codes: 0 ok, 1 refused by the server, "
        "2 bad command line, 3 no settings or no answer.",
    )
    _connection(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _connection(common, suppress=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    user.register(commands, common)
    results.register(commands, common)
    admin.register(commands, common)
    return parser


def main(
    argv: Optional[Sequence[str]] = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    environ: Optional[Mapping[str, str]] = None,
    sleep: Optional[Callable[[float], None]] = None,
    now: Optional[Callable[[], datetime]] = None,
) -> int:
    """
    Run one command; return its exit code (the console script exits with it).
    """
    import time

    environ = os.environ if environ is None else environ
    parser = buildParser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    zone = localZone()
    try:
        settings = loadSettings(vars(args), environ)
        client = Client(settings)
    except (ConfigError, Unreachable) as e:
        err.write(f"marvin: {e}\n")
        return UNREACHABLE
    run = Run(
        client=client, out=out, err=err, json=args.json, zone=zone,
        now=now or (lambda: datetime.now(zone)), sleep=sleep or time.sleep,
    )
    try:
        code = args.handler(run, args)
    except (UsageError, TimeError, FilterError) as e:
        err.write(f"marvin {args.command}: {e}\n")
        return USAGE
    except APIError as e:
        if args.json:
            run.dump(e.body)
        err.write(f"marvin {args.command}: {e}\n")
        return REFUSED
    except Unreachable as e:
        err.write(f"marvin: {e}\n")
        return UNREACHABLE
    except KeyboardInterrupt:
        err.write("\n")
        return 130
    return OK if code is None else code


def script() -> None:
    """
    The C{marvin} console script.
    """
    sys.exit(main())
