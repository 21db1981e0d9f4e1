# -*- test-case-name: tests.test_rest_resource -*-
"""
Optional CORS for browser clients (the legacy server left it to nginx).

Browsers send client certificates as credentials, so an allowed origin is
echoed (never C{*}) together with C{Access-Control-Allow-Credentials}.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

import attrs


@attrs.frozen
class CORSPolicy:
    """
    Which browser origins may call the API.

    @ivar origins: exact origins (C{"https://ui.example.org"}), or C{"*"} for any.
    @ivar maxAge: how long a browser may cache a preflight answer, in seconds.
    """

    origins: tuple[str, ...] = ()
    maxAge: int = 600
    allowHeaders: tuple[str, ...] = ("Accept", "Content-Type")

    @classmethod
    def coerce(cls, value: Union[None, "CORSPolicy", Iterable[str]]) -> Optional["CORSPolicy"]:
        """
        Accept a policy, a list of origins or C{None} (no CORS headers at all).
        """
        if value is None or isinstance(value, CORSPolicy):
            return value
        if isinstance(value, str):
            value = [value]
        origins = tuple(str(o).strip().rstrip("/") for o in value if str(o).strip())
        return cls(origins=origins) if origins else None

    def allows(self, origin: str) -> bool:
        """
        Whether C{origin} may read our answers.
        """
        return "*" in self.origins or origin.rstrip("/") in self.origins

    def headers(self, origin: Optional[str], preflight: bool, methods: Iterable[str]) -> dict[str, str]:
        """
        The CORS response headers for a request from C{origin}.
        """
        if not origin or not self.allows(origin):
            return {}
        result = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            # A browser script reads the paging cursor and a held request's outcome.
            "Access-Control-Expose-Headers": "Location, api-version, Link, X-Marvin-Next, X-Marvin-Wait, X-Marvin-State",
            "Vary": "Origin",
        }
        if preflight:
            result["Access-Control-Allow-Methods"] = ", ".join(methods)
            result["Access-Control-Allow-Headers"] = ", ".join(self.allowHeaders)
            result["Access-Control-Max-Age"] = str(self.maxAge)
        return result
