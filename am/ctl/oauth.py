# -*- test-case-name: tests.test_inventory_oauth -*-
"""
OAuth2 client credentials (RFC 6749 §4.4) for the inventory API: the MONROE
inventory hands out short-lived bearer tokens, so a token read once at start
would stop the sync when it expires.

L{TokenSource} holds one token and gets a new one before it expires, after
the inventory answers 401, and never more than one request at a time. A
failing token endpoint is retried with a growing pause (the old token is used
while it is still valid); every failure is an L{InventoryError} for the sync
to log and retry, never an exception that could stop the controller. The
client secret is read from its file at each request, so it can be rotated
without a restart.
"""

from __future__ import annotations

import base64
import json
import math
from io import BytesIO
from typing import Any, Optional
from urllib.parse import quote, urlencode

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from am.ctl.httpbody import describeFailure, readBody
from am.ctl.inventorymap import InventoryError

__all__ = ["OAuth2Settings", "TokenSource"]

#: the most a token endpoint may answer
TOKEN_ANSWER_LIMIT = 64 * 1024


@attrs.frozen
class OAuth2Settings:
    """
    Where and how to get inventory tokens.

    @ivar auth: C{basic} (HTTP Basic, RFC 6749 §2.3.1, the default) or
        C{body} (C{client_id} and C{client_secret} as form fields).
    @ivar margin: refresh this many seconds before expiry (at most half the
        token's lifetime).
    @ivar minBackoff: the first pause after a failed token request; it
        doubles with each further failure up to C{maxBackoff}.
    @ivar caFile: PEM roots for the token endpoint; C{None}: the system's.
    """

    tokenURL: str
    clientId: str
    secretFile: str
    scope: Optional[str] = None
    auth: str = "basic"
    margin: float = 60.0
    timeout: float = 30.0
    minBackoff: float = 5.0
    maxBackoff: float = 600.0
    caFile: Optional[str] = None


def _agent(reactor: Any, caFile: Optional[str], timeout: float) -> Any:
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    policy = BrowserLikePolicyForHTTPS()
    if caFile is not None:
        from twisted.internet.ssl import Certificate, trustRootFromCertificates

        with open(caFile, "rb") as f:
            roots = [Certificate.loadPEM(f.read())]
        policy = BrowserLikePolicyForHTTPS(trustRoot=trustRootFromCertificates(roots))
    return Agent(reactor, contextFactory=policy, connectTimeout=timeout, pool=HTTPConnectionPool(reactor, persistent=False))


class TokenSource:
    """
    The current bearer token for the inventory API.

    @ivar requests: how many token requests were made (for status and tests).
    """

    log = Logger()

    def __init__(self, reactor: Any, settings: OAuth2Settings, clock: Optional[IReactorTime] = None) -> None:
        self.reactor = reactor
        self.settings = settings
        self.clock = clock if clock is not None else reactor
        self.agent = _agent(reactor, settings.caFile, settings.timeout)
        self.requests = 0
        self._token: Optional[str] = None
        self._refreshAt = 0.0
        self._expiresAt = 0.0
        self._failures = 0
        self._retryAt = 0.0
        self._lastError = ""
        self._waiters: Optional[list[Deferred]] = None

    def token(self) -> Deferred:
        """
        A Deferred firing with a token that is not about to expire, or failing
        with L{InventoryError} when none can be had now.
        """
        now = self.clock.seconds()
        if self._token is not None and now < self._refreshAt:
            return succeed(self._token)
        if self._waiters is not None:
            waiter: Deferred = Deferred()
            self._waiters.append(waiter)
            return waiter
        if now < self._retryAt:
            if self._token is not None and now < self._expiresAt:
                return succeed(self._token)
            return fail(InventoryError(
                f"token endpoint: {self._lastError}; next try in {math.ceil(self._retryAt - now)} s"
            ))
        first: Deferred = Deferred()
        self._waiters = [first]
        self._request().addCallbacks(self._got, self._failed).addBoth(self._release)
        return first

    def invalidate(self, token: str) -> None:
        """
        The inventory refused C{token} (401): the next L{token} gets a new one
        (once: a token obtained since then is kept).
        """
        if token == self._token:
            self._token = None
            self._refreshAt = self._expiresAt = 0.0

    def _release(self, result: Any) -> None:
        waiters, self._waiters = self._waiters or [], None
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def _got(self, answer: tuple[str, Optional[int]]) -> str:
        token, lifetime = answer
        now = self.clock.seconds()
        self._token, self._failures, self._retryAt = token, 0, 0.0
        if lifetime is None:
            self._refreshAt = self._expiresAt = math.inf  # until a 401 says otherwise
        else:
            self._expiresAt = now + lifetime
            self._refreshAt = now + lifetime - min(self.settings.margin, lifetime / 2)
        self.log.info("inventory token obtained (valid {lifetime})",
                      lifetime="until refused" if lifetime is None else f"{lifetime} s")
        return token

    def _failed(self, failure: Failure) -> Any:
        message = failure.getErrorMessage() if failure.check(InventoryError) else describeFailure(failure)
        self._failures += 1
        pause = min(self.settings.maxBackoff, self.settings.minBackoff * 2 ** (self._failures - 1))
        self._retryAt = self.clock.seconds() + pause
        self._lastError = message
        self.log.warn("inventory token request failed: {message}; next try in {pause:g} s", message=message, pause=pause)
        if self._token is not None and self.clock.seconds() < self._expiresAt:
            return self._token  # the old one is still good for a while
        return Failure(InventoryError(f"token endpoint: {message}"))

    def _secret(self) -> str:
        try:
            with open(self.settings.secretFile, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise InventoryError(f"cannot read the client secret file {self.settings.secretFile}: {e.strerror}") from None

    def _request(self) -> Deferred:
        from twisted.web.client import FileBodyProducer
        from twisted.web.http_headers import Headers

        try:
            secret = self._secret()
        except InventoryError:
            return fail()
        form = {"grant_type": "client_credentials"}
        if self.settings.scope:
            form["scope"] = self.settings.scope
        headers = Headers({
            b"Content-Type": [b"application/x-www-form-urlencoded"],
            b"Accept": [b"application/json"],
            b"User-Agent": [b"marvinctld"],
        })
        if self.settings.auth == "body":
            form.update(client_id=self.settings.clientId, client_secret=secret)
        else:
            pair = f"{quote(self.settings.clientId, safe='')}:{quote(secret, safe='')}"
            headers.addRawHeader(b"Authorization", b"Basic " + base64.b64encode(pair.encode("utf-8")))
        self.requests += 1
        d = self.agent.request(
            b"POST", self.settings.tokenURL.encode("ascii"), headers,
            FileBodyProducer(BytesIO(urlencode(form).encode("ascii"))),
        )

        def gotResponse(response: Any) -> Deferred:
            return readBody(response, TOKEN_ANSWER_LIMIT).addCallback(lambda body: _parse(response, body))

        d.addCallback(gotResponse)
        timeout = self.settings.timeout
        d.addTimeout(timeout, self.reactor, onTimeoutCancel=lambda _, t: Failure(InventoryError(f"no answer in {t:g} s")))
        return d


def _parse(response: Any, body: bytes) -> tuple[str, Optional[int]]:
    """
    The token and its lifetime in seconds (C{None}: not said) from a token
    endpoint's answer (RFC 6749 §5.1, errors §5.2).
    """
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if response.code != 200:
        detail = ""
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            detail = ": " + document["error"]
            if isinstance(document.get("error_description"), str):
                detail += f" ({document['error_description'][:200]})"
        raise InventoryError(f"HTTP {response.code} {response.phrase.decode('latin-1')}{detail}")
    if not isinstance(document, dict):
        raise InventoryError("answer is not a JSON object")
    token = document.get("access_token")
    if not isinstance(token, str) or not token.strip() or any(c in token for c in "\r\n"):
        raise InventoryError("answer has no usable access_token")
    kind = document.get("token_type", "Bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise InventoryError(f"token_type {kind!r} is not Bearer")
    lifetime = document.get("expires_in")
    if lifetime is not None:
        try:
            lifetime = int(lifetime)
        except (TypeError, ValueError):
            raise InventoryError(f"expires_in {lifetime!r} is not a number of seconds") from None
        if lifetime <= 0:
            raise InventoryError(f"expires_in {lifetime} is not positive")
    return token.strip(), lifetime
