# -*- test-case-name: tests.test_trust_gate -*-
"""
Refusals of the trust layer, carrying the GENI code the face returns.

The GENI face turns a L{TrustError} into the AM API v3 error struct
C{{"code": {"geni_code": e.geniCode}, "value": "", "output": e.message}}; the
message says what was wrong without echoing credentials, keys or documents.
"""

from __future__ import annotations

SUCCESS = 0
BADARGS = 1
ERROR = 2
FORBIDDEN = 3
BADVERSION = 4
SERVERERROR = 5
TOOBIG = 6
REFUSED = 7
UNSUPPORTED = 13
EXPIRED = 15

CODE_NAMES = {
    SUCCESS: "SUCCESS",
    BADARGS: "BADARGS",
    ERROR: "ERROR",
    FORBIDDEN: "FORBIDDEN",
    BADVERSION: "BADVERSION",
    SERVERERROR: "SERVERERROR",
    TOOBIG: "TOOBIG",
    REFUSED: "REFUSED",
    UNSUPPORTED: "UNSUPPORTED",
    EXPIRED: "EXPIRED",
}


class TrustError(Exception):
    """
    A caller or credential was refused.

    @ivar geniCode: the GENI AM API C{geni_code} for the refusal, e.g.
        L{BADARGS} for a malformed credential, L{FORBIDDEN} for one that does
        not grant what was asked, L{EXPIRED} for an expired one.
    @ivar message: a human-readable reason, safe to send to the client.
    """

    def __init__(self, geniCode: int, message: str) -> None:
        super().__init__(geniCode, message)
        self.geniCode = geniCode
        self.message = message

    def __str__(self) -> str:
        return f"{CODE_NAMES.get(self.geniCode, self.geniCode)}: {self.message}"

    def asGeniResult(self) -> dict[str, object]:
        """
        The AM API v3 return struct for this refusal.

        Offered so every caller builds the same shape: C{value} is C{""} and
        C{output} is never C{None}, as jFed and omni require.
        """
        return {
            "code": {"geni_code": self.geniCode},
            "value": "",
            "output": self.message,
        }
