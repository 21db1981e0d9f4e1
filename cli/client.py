# -*- test-case-name: tests.test_cli_e2e -*-
"""
A small synchronous HTTPS client for the REST API: the standard library's
urllib with an SSL context holding the user's client certificate. Every
answer is JSON; every error becomes L{APIError} with the server's message.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping, Optional

from cli.config import Settings

__all__ = ["APIError", "Client", "Unreachable"]


class APIError(Exception):
    """
    The server answered with an error.

    @ivar status: the HTTP status.
    @ivar body: the decoded JSON body (C{{"message": ...}} and extra keys such
        as C{suggestions}), or C{{"message": <text>}} for a non-JSON answer.
    """

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{body.get('message') or 'error'} (HTTP {status})")


class Unreachable(Exception):
    """
    No answer: connection refused, TLS failure, timeout.
    """


def _decode(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"message": data.decode("utf-8", "replace").strip()[:500]}


class Client:
    """
    Calls on one controller with one identity.
    """

    def __init__(self, settings: Settings, userAgent: str = "marvin-cli") -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/")
        if not self.base.endswith("/v1"):
            self.base += "/v1"
        self.userAgent = userAgent
        handlers: list[Any] = []
        if self.base.startswith("https://"):
            try:
                context = ssl.create_default_context(cafile=settings.ca)
                if settings.cert:
                    context.load_cert_chain(settings.cert, settings.key)
            except (ssl.SSLError, OSError) as e:
                raise Unreachable(f"cannot load the certificate, key or CA: {e}") from None
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)

    def call(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, Any]] = None,
        body: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """
        C{method} on C{/v1/path}; the decoded JSON answer.

        @raise APIError: for an HTTP error status.
        @raise Unreachable: when no answer came.
        """
        return self.exchange(method, path, query, body)[0]

    def exchange(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, Any]] = None,
        body: Optional[Mapping[str, Any]] = None,
    ) -> tuple[Any, dict[str, str]]:
        """
        Like L{call}, with the answer's headers (lower-case names).
        """
        url = self.base + "/" + path.lstrip("/")
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None
        headers = {"Accept": "application/json", "User-Agent": self.userAgent}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=self.settings.timeout) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                return _decode(response.read()), headers
        except urllib.error.HTTPError as e:
            decoded = _decode(e.read())
            if not isinstance(decoded, dict):
                decoded = {"message": e.reason or "error", "body": decoded}
            raise APIError(e.code, decoded) from None
        except urllib.error.URLError as e:
            raise Unreachable(f"cannot reach {self.settings.url}: {e.reason}") from None
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            raise Unreachable(f"cannot reach {self.settings.url}: {e}") from None

    def download(self, path: str, target: Any) -> str:
        """
        Stream the body of C{GET /v1/path} into the binary file C{target},
        block by block; the SHA-256 of what arrived.

        @raise APIError: for an HTTP error status.
        @raise Unreachable: when no (whole) answer came.
        """
        request = urllib.request.Request(
            self.base + "/" + path.lstrip("/"), headers={"User-Agent": self.userAgent}, method="GET"
        )
        digest = hashlib.sha256()
        try:
            with self.opener.open(request, timeout=self.settings.timeout) as response:
                for block in iter(lambda: response.read(1 << 16), b""):
                    digest.update(block)
                    target.write(block)
        except urllib.error.HTTPError as e:
            decoded = _decode(e.read())
            raise APIError(e.code, decoded if isinstance(decoded, dict) else {"message": str(e.reason)}) from None
        except urllib.error.URLError as e:
            raise Unreachable(f"cannot reach {self.settings.url}: {e.reason}") from None
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            raise Unreachable(f"cannot reach {self.settings.url}: {e}") from None
        return digest.hexdigest()

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, query=query or None)
