# -*- test-case-name: tests.test_cli_units -*-
"""
Where C{marvin} finds the controller and the user's certificate: a YAML file
(C{~/.config/marvin/cli.yaml}), then the environment (C{MARVIN_URL},
C{MARVIN_CERT}, C{MARVIN_KEY}, C{MARVIN_CA}), then flags; later ones win.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import attrs
import yaml

# LibYAML's safe loader when PyYAML was built with it (faster), else PyYAML's.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

__all__ = ["ConfigError", "Settings", "defaultConfigPath", "loadSettings"]

KEYS = ("url", "cert", "key", "ca", "timeout")
ENVIRONMENT = {"url": "MARVIN_URL", "cert": "MARVIN_CERT", "key": "MARVIN_KEY", "ca": "MARVIN_CA"}


class ConfigError(Exception):
    """
    The settings are unusable; the message names the file or variable.
    """


@attrs.frozen
class Settings:
    """
    @ivar url: the controller's base URL, e.g. C{https://marvin.example.org}
        (C{/v1} is added by the client).
    @ivar cert: the client certificate (PEM); C{key} its key when separate.
    @ivar ca: PEM roots for the controller's certificate; C{None}: the system's.
    """

    url: str
    cert: Optional[str] = None
    key: Optional[str] = None
    ca: Optional[str] = None
    timeout: float = 60.0


def defaultConfigPath(environ: Mapping[str, str]) -> str:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "marvin", "cli.yaml")


def _fromFile(path: str, explicit: bool) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_LOADER)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: no such file") from None
        return {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of {', '.join(KEYS)}")
    unknown = sorted(set(map(str, data)) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    base = os.path.dirname(os.path.abspath(path))
    found: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key == "timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{path}: timeout: must be a number of seconds")
            found[key] = float(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{path}: {key}: must be a string")
        elif key in ("cert", "key", "ca"):
            found[key] = os.path.join(base, os.path.expanduser(value))
        else:
            found[key] = value
    return found


def loadSettings(flags: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """
    Merge the file (C{flags["config"]}, C{$MARVIN_CONFIG} or the default
    path), the environment and the flags.

    @raise ConfigError: for a broken file, or no URL anywhere.
    """
    path = flags.get("config") or environ.get("MARVIN_CONFIG")
    merged = _fromFile(path or defaultConfigPath(environ), explicit=bool(path))
    for key, variable in ENVIRONMENT.items():
        if environ.get(variable):
            merged[key] = environ[variable]
    for key in KEYS:
        if flags.get(key) is not None:
            merged[key] = flags[key]
    url = merged.get("url")
    if not url:
        raise ConfigError(
            f"no controller URL: give --url, set MARVIN_URL, or put url: in {path or defaultConfigPath(environ)}"
        )
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"url must start with https:// (or http:// for a local proxy), not {url!r}")
    for key in ("cert", "key", "ca"):
        value = merged.get(key)
        if value is not None:
            value = os.path.expanduser(value)
            if not os.path.isfile(value):
                raise ConfigError(f"{key}: no such file: {value}")
            merged[key] = value
    if merged.get("key") and not merged.get("cert"):
        raise ConfigError("key given without cert")
    return Settings(**{k: merged[k] for k in KEYS if merged.get(k) is not None})
