# -*- test-case-name: tests.test_lifecycle,tests.test_states -*-
"""
Errors the scheduling core raises; each protocol face maps them to its own form
(an HTTP status with a JSON message, or a GENI error code struct).
"""

from __future__ import annotations

from typing import Any


class MarvinError(Exception):
    """
    Base class: C{message} is safe to show to the caller, C{extra} is data for the reply.
    """

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class BadRequest(MarvinError):
    """
    The request is malformed: a missing or ill-typed parameter.
    """


class NotFound(MarvinError):
    """
    No such node, user, experiment or schedule.
    """


class Forbidden(MarvinError):
    """
    The caller is known but may not do this.
    """


class Conflict(MarvinError):
    """
    The request is well formed but cannot be satisfied now: no free slot, quota, policy.
    """


class TransitionRefused(Conflict):
    """
    A status change that the state machine does not allow.
    """


class AlreadyExists(Conflict):
    """
    The thing to create exists already (a GENI slice that has slivers here:
    single allocation).
    """


class StaleWrite(Conflict):
    """
    A row changed between being read and being written back (its version
    moved on): nothing was written; the caller may simply try again.
    """
