# -*- test-case-name: tests.test_outbox -*-
"""
Notification targets and signatures, as pure functions: which URLs and
addresses may be targets (no server-side request forgery: private,
loopback and link-local addresses only with the operator's leave), and the
HMAC-SHA256 signature receivers check (docs/notifications.md).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any, Optional, Union
from urllib.parse import urlsplit

from am.core.errors import BadRequest
from am.core.policy import Policy

#: The booking option that names the receiver.
OPTION = "notify"
#: Where an experiment keeps it: hidden from every rendering of its options
#: (a webhook URL often carries a token, and nodes read experiments they
#: run), shown to the owner with the outbox (C{GET /experiments/<id>/events}).
STORED = "_notify"
MAX_URL = 2000


def addressRefused(address: Union[str, ipaddress.IPv4Address, ipaddress.IPv6Address]) -> Optional[str]:
    """
    Why an IP address may not be a notification target without the
    operator's leave (private, loopback, link-local, shared, reserved,
    multicast, unspecified), or C{None} for a public address. An IPv4
    address mapped into IPv6 is judged as itself.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, name in (
        ("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"), ("is_private", "private"), ("is_reserved", "reserved"),
    ):
        if getattr(ip, test):
            return f"{name} address {ip}"
    if not ip.is_global:
        return f"non-public address {ip}"
    return None


def checkURL(url: Any, policy: Policy) -> str:
    """
    The notify URL of a booking, checked as text: http or https, a host, no
    user name or password; an IP literal or C{localhost} that is not public
    is refused unless the operator allows private targets. The address a
    name resolves to is checked again at each delivery.

    @raise BadRequest: naming the option.
    """
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL:
        raise BadRequest(f"options.{OPTION} must be an http(s) URL of at most {MAX_URL} characters",
                         parameter=OPTION)
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port
    except ValueError:
        raise BadRequest(f"options.{OPTION}: not a URL", parameter=OPTION) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"options.{OPTION}: must be an http:// or https:// URL with a host", parameter=OPTION)
    if parts.username is not None or parts.password is not None:
        raise BadRequest(f"options.{OPTION}: no user name or password in the URL", parameter=OPTION)
    if policy.notifyPrivate:
        return url
    host = parts.hostname.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        raise BadRequest(f"options.{OPTION}: {host} is not a public address", parameter=OPTION)
    try:
        why = addressRefused(host)
    except ValueError:
        return url  # a name: its addresses are checked when delivering
    if why is not None:
        raise BadRequest(f"options.{OPTION}: {why} is not allowed as a target", parameter=OPTION)
    return url


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """
    The C{X-Marvin-Signature} header: HMAC-SHA256 of C{"<timestamp>." + body}
    under the owner's secret, as C{sha256=<hex>}.
    """
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()
