# -*- test-case-name: tests.test_geni_api -*-
"""
The AM API v3 return struct, and the mapping of every error to a GENI code.
API-level errors are always structs with a non-zero C{geni_code}, never Faults.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.logger import Logger

from am.core.errors import AlreadyExists, BadRequest, Conflict, Forbidden, MarvinError, NotFound, StaleWrite
from rspec.times import formatTime
from rspec.xml import RSpecError

from am.trust.errors import (  # noqa: F401 (the GENI codes, one table)
    BADARGS,
    BADVERSION,
    ERROR,
    EXPIRED,
    FORBIDDEN,
    REFUSED,
    SERVERERROR,
    SUCCESS,
    TOOBIG,
    UNSUPPORTED,
    TrustError,
)

SEARCHFAILED = 12
BUSY = 14
ALREADYEXISTS = 17

AM_TYPE = "marvin"

log = Logger()


class GeniError(Exception):
    """
    A refusal decided by the GENI face itself.
    """

    def __init__(self, code: int, message: str, value: Any = "") -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.value = value


def result(value: Any, output: str = "", code: int = SUCCESS) -> dict[str, Any]:
    """
    The v3 struct; C{output} is never None, C{value} always present.
    """
    return {
        "code": {"geni_code": code, "am_type": AM_TYPE, "am_code": code},
        "value": value,
        "output": output,
    }


def _coreCode(error: MarvinError) -> int:
    if isinstance(error, BadRequest):
        return BADARGS
    if isinstance(error, NotFound):
        return SEARCHFAILED
    if isinstance(error, Forbidden):
        return FORBIDDEN
    if isinstance(error, AlreadyExists):
        return ALREADYEXISTS
    if isinstance(error, StaleWrite):
        return BUSY  # changed meanwhile: the same call again may well succeed
    if isinstance(error, Conflict):
        return REFUSED
    return ERROR


def fromException(error: BaseException, method: str) -> dict[str, Any]:
    """
    Turn any exception into the struct the caller gets; unexpected ones are
    logged with an id and reported as SERVERERROR without internals.
    """
    if isinstance(error, GeniError):
        return result(error.value, error.message, error.code)
    if isinstance(error, TrustError):
        return result("", error.message, error.geniCode)
    if isinstance(error, RSpecError):
        return result("", f"Bad RSpec: {error}", BADARGS)
    if isinstance(error, MarvinError):
        value: Any = ""
        if isinstance(error, Conflict) and "suggestions" in error.extra:
            value = {
                "geni_suggestions": [
                    {
                        "geni_start_time": formatTime(s["start"]),
                        "geni_end_time": formatTime(s["stop"]),
                        "marvin_latest_end_time": formatTime(s["max_stop"]),
                        "marvin_free_nodes": s["max_nodecount"],
                    }
                    for s in error.extra["suggestions"]
                ]
            }
        message = error.message
        if isinstance(error, Conflict) and "quota" in error.extra:
            # A refusal for quota says which, how much is missing and when it resets.
            extra = error.extra
            value = {"marvin_quota": extra["quota"], "marvin_missing": extra["missing"],
                     "marvin_resets": formatTime(extra["resets"])}
            message = (f"{message} {extra['missing']} more {extra['quota']} needed; "
                       f"the quota resets at {formatTime(extra['resets'])}.")
        return result(value, message, _coreCode(error))
    reference = uuid.uuid4().hex[:12]
    log.failure("Unexpected error in {method} ({reference})", method=method, reference=reference)
    return result("", f"Internal error (reference {reference})", SERVERERROR)
