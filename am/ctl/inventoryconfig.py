# -*- test-case-name: tests.test_ctl_config -*-
"""
The controller's C{inventory} configuration section: a static file and/or an
inventory API with a token or OAuth2 client credentials (docs/inventory.md).
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlsplit

import attrs

from node import confcheck as check
from node.confcheck import ConfigError

from am.ctl.inventory import FieldMapping, InventoryAPI, InventoryError, loadStaticInventory
from am.ctl.oauth import OAuth2Settings


@attrs.frozen
class InventoryConfig:
    """
    Where nodes come from, and how often to look.
    """

    file: Optional[str] = None
    api: Optional[InventoryAPI] = None
    period: float = 3600.0
    retry: float = 60.0


def parseInventory(data: dict[str, Any], base: str, checkFiles: bool) -> InventoryConfig:
    """
    The C{inventory} section; with C{checkFiles} the static file is read now
    (and kept for the first sync) and the API's secrets and CA must be there.
    """
    section = check.section(data, "inventory", "inventory")
    check.known(section, {"file", "api", "period", "retry"}, "inventory")
    path = check.string(section, "file", "inventory.file")
    staticFile = None if path is None else check.path(base, path)
    if staticFile is not None and checkFiles:
        try:
            # Kept for the first sync at start, which then does not parse it again.
            loadStaticInventory(staticFile, keep=True)
        except InventoryError as e:
            raise ConfigError(f"inventory.file: {e}") from None
    api = None
    if section.get("api") is not None:
        api = _inventoryAPI(check.section(section, "api", "inventory.api"), base, checkFiles)
    return InventoryConfig(
        file=staticFile,
        api=api,
        period=check.seconds(section, "period", "inventory.period", 3600, 1),
        retry=check.seconds(section, "retry", "inventory.retry", 60, 1),
    )


def _inventoryAPI(section: dict[str, Any], base: str, checkFiles: bool) -> InventoryAPI:
    where = "inventory.api"
    check.known(
        section,
        {"url", "token_header", "token", "token_file", "oauth2", "timeout", "list_key", "max_bytes", "ca", "fields"},
        where,
    )
    url = check.required(section, "url", f"{where}.url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.url: must be an http:// or https:// URL, not {url!r}")
    token = check.string(section, "token", f"{where}.token")
    tokenFile = check.string(section, "token_file", f"{where}.token_file")
    if token is not None and tokenFile is not None:
        raise ConfigError(f"{where}: give token or token_file, not both")
    if tokenFile is not None:
        tokenFile = check.path(base, tokenFile)
        token = check.readable(tokenFile, f"{where}.token_file").decode("utf-8", "replace").strip()
    oauth2 = None
    if section.get("oauth2") is not None:
        if token is not None or tokenFile is not None:
            raise ConfigError(f"{where}: give oauth2 or a static token (token, token_file), not both")
        oauth2 = _oauth2(check.section(section, "oauth2", f"{where}.oauth2"), base, checkFiles)
    header = check.string(section, "token_header", f"{where}.token_header", "Authorization") or "Authorization"
    if not all(c.isalnum() or c in "-_" for c in header):
        raise ConfigError(f"{where}.token_header: not a valid header name: {header!r}")
    ca = _caFile(section, base, where, checkFiles)
    maxBytes = section.get("max_bytes", 64 * 1024 * 1024)
    if isinstance(maxBytes, bool) or not isinstance(maxBytes, int) or maxBytes < 1024:
        raise ConfigError(f"{where}.max_bytes: must be a number of bytes, at least 1024")
    try:
        mapping = FieldMapping.fromConfig(section.get("fields"), f"{where}.fields")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return InventoryAPI(
        url=url,
        mapping=mapping,
        listKey=check.string(section, "list_key", f"{where}.list_key"),
        tokenHeader=header,
        token=token,
        tokenFile=tokenFile,
        oauth2=oauth2,
        timeout=check.seconds(section, "timeout", f"{where}.timeout", 60, 1),
        maxBytes=maxBytes,
        caFile=ca,
    )


def _oauth2(section: dict[str, Any], base: str, checkFiles: bool) -> OAuth2Settings:
    where = "inventory.api.oauth2"
    check.known(
        section,
        {"token_url", "client_id", "client_secret_file", "scope", "auth", "refresh_margin", "timeout",
         "min_backoff", "max_backoff", "ca"},
        where,
    )
    url = check.required(section, "token_url", f"{where}.token_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.token_url: must be an http:// or https:// URL, not {url!r}")
    secretFile = check.path(base, check.required(section, "client_secret_file", f"{where}.client_secret_file"))
    if checkFiles and not check.readable(secretFile, f"{where}.client_secret_file").strip():
        raise ConfigError(f"{where}.client_secret_file: {secretFile} is empty")
    auth = check.string(section, "auth", f"{where}.auth", "basic")
    if auth not in ("basic", "body"):
        raise ConfigError(f"{where}.auth: must be basic or body, not {auth!r}")
    ca = _caFile(section, base, where, checkFiles)
    minBackoff = check.seconds(section, "min_backoff", f"{where}.min_backoff", 5, 1)
    return OAuth2Settings(
        tokenURL=url,
        clientId=check.required(section, "client_id", f"{where}.client_id"),
        secretFile=secretFile,
        scope=check.string(section, "scope", f"{where}.scope"),
        auth=auth,
        margin=check.seconds(section, "refresh_margin", f"{where}.refresh_margin", 60, 0),
        timeout=check.seconds(section, "timeout", f"{where}.timeout", 30, 1),
        minBackoff=minBackoff,
        maxBackoff=check.seconds(section, "max_backoff", f"{where}.max_backoff", 600, minBackoff),
        caFile=ca,
    )


def _caFile(section: dict[str, Any], base: str, where: str, checkFiles: bool) -> Optional[str]:
    """
    The C{ca} file a section names (a PEM certificate), if any.
    """
    ca = check.string(section, "ca", f"{where}.ca")
    if ca is not None:
        ca = check.path(base, ca)
        if checkFiles and b"-----BEGIN CERTIFICATE-----" not in check.readable(ca, f"{where}.ca"):
            raise ConfigError(f"{where}.ca: {ca} holds no PEM certificate")
    return ca
