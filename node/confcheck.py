# -*- test-case-name: tests.test_node_config,tests.test_ctl_config -*-
"""
The one configuration-validation toolkit of marvind and marvinctld.

Every check raises one L{ConfigError} whose message starts with where the
problem is (C{listen.tls.port}, C{heartbeat.period}) and says what is wrong
and what was found, so an operator sees one clear line, never a traceback.

It lives with the agent because the agent ships alone and imports nothing
of C{am/}; the controller's configuration (L{am.ctl.config}) uses it too,
an import the layer contract declares. It imports nothing of either.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import yaml

#: LibYAML's safe loader when PyYAML was built with it (about 7 times faster
#: than PyYAML's own, the same documents), else PyYAML's.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    """
    The configuration cannot be used; the message says which key and why.
    """


def readYAML(path: str) -> Any:
    """
    The parsed document of the file at C{path}.

    @raise ConfigError: if the file cannot be read or is not YAML.
    """
    try:
        with open(path, "rb") as f:
            return yaml.load(f, Loader=SAFE_LOADER)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None


def section(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """
    A nested mapping; absent or empty is C{{}}.
    """
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping of keys")
    return value


def known(data: dict[str, Any], keys: set[str], where: str) -> None:
    """
    Refuse keys not in C{keys} (a misspelt key must not be silently ignored).
    """
    unknown = sorted(map(str, set(data) - keys))
    if unknown:
        prefix = f"{where}: unknown key(s)" if where else "unknown key(s)"
        raise ConfigError(f"{prefix}: {', '.join(unknown)} (known: {', '.join(sorted(keys))})")


def string(data: dict[str, Any], key: str, where: str, default: Optional[str] = None) -> Optional[str]:
    """
    A string (a number is taken as its text), stripped; empty is C{None}.
    """
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: must be a string, not {value!r}")
    value = str(value).strip()
    return value or None


def required(data: dict[str, Any], key: str, where: str) -> str:
    """
    A string that must be there.
    """
    value = string(data, key, where)
    if value is None:
        raise ConfigError(f"{where}: required")
    return value


def number(
    data: dict[str, Any], key: str, where: str, default: float, low: float,
    high: Optional[float] = None, unit: str = "",
) -> float:
    """
    A number within C{[low, high]}; C{unit} (C{"seconds"}) names what it counts.
    """
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = f"a number of {unit}" if unit else "a number"
        raise ConfigError(f"{where}: must be {kind}, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ConfigError(f"{where}: must be {bound}, not {value!r}")
    return float(value)


def seconds(data: dict[str, Any], key: str, where: str, default: float, low: float) -> float:
    """
    A duration in seconds, at least C{low}.
    """
    return number(data, key, where, default, low, unit="seconds")


def stringList(value: Any, where: str) -> list[str]:
    """
    A list of non-empty strings (one string is a list of one).
    """
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: must be a list of strings")
    return [v.strip() for v in value]


def path(base: str, value: str) -> str:
    """
    C{value} (C{~} expanded) relative to C{base}, normalised.
    """
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def readable(filename: str, where: str) -> bytes:
    """
    The content of a file that must be readable.
    """
    try:
        with open(filename, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {filename}: {e.strerror}") from None
