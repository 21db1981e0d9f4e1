# -*- test-case-name: tests.test_pgusers -*-
"""
Hearing of user changes made by any controller sharing a PostgreSQL
database, so the faces may remember callers between requests.

A trigger on C{users} (schema migration 12) calls C{pg_notify('marvin_users',
<schema>)} in the changing transaction; PostgreSQL delivers it only at its
commit, to every session listening. Each controller listens on a dedicated
connection (in a thread of its own) and counts the notifications for its
schema: L{UserChanges.version}. The faces forget what they remember when it
moves, and remember nothing while it is C{None}: not listening (not yet
connected, or the connection lost), when a change could go unheard. It moves
on every (re)connection too, so what was remembered before is forgotten.
"""

from __future__ import annotations

import threading
from typing import Optional

import psycopg
from twisted.logger import Logger

CHANNEL = "marvin_users"


class UserChanges:
    """
    A counter of the user changes committed on the database, by anyone.
    """

    log = Logger(namespace="marvinctld")

    def __init__(self, url: str, retry: float = 2.0, wait: float = 1.0) -> None:
        self.url = url
        self._retry = retry
        self._wait = wait
        self._connection: Optional[psycopg.Connection] = None
        self._schema: Optional[str] = None
        self._count = 0
        self._listening = False
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def version(self) -> Optional[int]:
        """
        Moves at every user change heard; C{None} while changes may go unheard.
        """
        return self._count if self._listening else None

    def poll(self, timeout: float) -> bool:
        """
        One turn, synchronous: connect and listen if not listening, else wait
        up to C{timeout} seconds for a notification (the thread's loop; tests
        call it directly).

        @return: whether listening now.
        """
        try:
            if self._connection is None:
                self._listen()
            else:
                for notify in self._connection.notifies(timeout=timeout, stop_after=1):
                    if notify.payload == self._schema:
                        self._count += 1
                if self._connection.broken or self._connection.closed:
                    raise psycopg.OperationalError("the connection was lost")
        except psycopg.Error as e:
            if self._listening:
                self.log.warn("user changes: {error}; remembering no callers until heard again",
                              error=str(e).strip())
            self._drop()
        return self._listening

    def _listen(self) -> None:
        self._connection = psycopg.connect(
            self.url, autocommit=True, connect_timeout=10,
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
        )
        self._schema = self._connection.execute("SELECT current_schema()").fetchone()[0]
        self._connection.execute(f"LISTEN {CHANNEL}")
        # Anything remembered before may have changed unheard: forget it.
        self._count += 1
        self._listening = True

    def _drop(self) -> None:
        self._listening = False
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            if not self.poll(self._wait):
                self._stopping.wait(self._retry)
        self._drop()

    def start(self) -> None:
        """
        Listen in a thread of its own until L{stop}.
        """
        self._thread = threading.Thread(target=self._run, name="marvin-user-changes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """
        Stop listening (the thread closes its connection within C{wait} seconds).
        """
        self._listening = False
        self._stopping.set()
        if self._thread is None:
            self._drop()
