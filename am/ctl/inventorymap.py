# -*- test-case-name: tests.test_inventory -*-
"""
Inventory records to node entries: the configurable field mapping (enough to
express the legacy Nimbus2 C{routers} shape) and the static YAML inventory.
"""

from __future__ import annotations

import json
import os
import string
from typing import Any, Mapping, Optional

import attrs
import yaml

from am.core.model import NODE_ACTIVE, NODE_STATUSES

_MISSING = object()


class InventoryError(Exception):
    """
    An inventory source could not be read or made no sense; the message says why.
    """


# -- field mapping -------------------------------------------------------------


def _lookup(record: Any, path: str) -> Any:
    """
    Follow a dotted path (C{location.country}, C{items.0}) into a JSON value.
    """
    value = record
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING or value is None:
            return _MISSING
    return value


@attrs.frozen
class Field:
    """
    How to get one value out of an inventory record.

    Written in the configuration as:
      - C{"name"} or C{"a.b"}: that (dotted) field;
      - C{[spec, spec, ...]}: the first alternative that is present;
      - C{{field: spec, map: {...}, pick: first|last, default: x}}: translate
        the value through C{map}; when the value is a list (say, a router's
        C{allTags}), the keys of C{map} present in it are candidates in the
        order C{map} lists them, and C{pick} chooses the first or the last;
      - C{{template: "{streetName} - {countryName}"}}: fill in fields (absent
        if any is missing);
      - C{{value: x}}: a constant.
    """

    paths: tuple[str, ...] = ()
    alternatives: tuple["Field", ...] = ()
    inner: Optional["Field"] = None
    mapping: Optional[tuple[tuple[str, Any], ...]] = None
    pickLast: bool = False
    default: Any = None
    template: Optional[str] = None
    constant: Any = None
    isConstant: bool = False

    @classmethod
    def fromConfig(cls, spec: Any, where: str) -> "Field":
        """
        @raise ValueError: naming C{where} and what is wrong.
        """
        if isinstance(spec, str) and spec.strip():
            return cls(paths=(spec.strip(),))
        if isinstance(spec, list) and spec:
            return cls(alternatives=tuple(cls.fromConfig(s, f"{where}[{i}]") for i, s in enumerate(spec)))
        if isinstance(spec, dict):
            keys = set(spec)
            if keys == {"value"}:
                return cls(constant=spec["value"], isConstant=True)
            if keys == {"template"}:
                text = spec["template"]
                if not isinstance(text, str):
                    raise ValueError(f"{where}.template: must be a string")
                try:
                    names = [n for _, n, _, _ in string.Formatter().parse(text) if n is not None]
                except ValueError as e:
                    raise ValueError(f"{where}.template: {e}") from None
                if not names or any(not n for n in names):
                    raise ValueError(f"{where}.template: name each field, as in '{{streetName}}'")
                return cls(template=text)
            unknown = keys - {"field", "map", "pick", "default"}
            if unknown or "field" not in keys:
                raise ValueError(
                    f"{where}: a mapping needs 'field' and may have 'map', 'pick', 'default'"
                    + (f" (unknown: {', '.join(sorted(map(str, unknown)))})" if unknown else "")
                )
            mapping = spec.get("map")
            if mapping is not None and not isinstance(mapping, dict):
                raise ValueError(f"{where}.map: must be a mapping of inventory value to value")
            pick = spec.get("pick", "first")
            if pick not in ("first", "last"):
                raise ValueError(f"{where}.pick: must be 'first' or 'last'")
            return cls(
                inner=cls.fromConfig(spec["field"], f"{where}.field"),
                mapping=None if mapping is None else tuple((str(k), v) for k, v in mapping.items()),
                pickLast=pick == "last",
                default=spec.get("default"),
            )
        raise ValueError(f"{where}: must be a field name, a list of alternatives or a mapping")

    def extract(self, record: Any) -> Any:
        """
        The value for C{record}, or C{None} when absent.
        """
        if self.isConstant:
            return self.constant
        if self.paths:
            value = _lookup(record, self.paths[0])
            return None if value is _MISSING else value
        if self.alternatives:
            for alternative in self.alternatives:
                value = alternative.extract(record)
                if value is not None and value != "":
                    return value
            return None
        if self.template is not None:
            values = {}
            for _, name, _, _ in string.Formatter().parse(self.template):
                if name is None:
                    continue
                value = _lookup(record, name)
                if isinstance(value, str):
                    value = value.strip()
                if value is _MISSING or value == "":
                    return None
                values[name] = value
            return self.template.format_map(values)
        assert self.inner is not None
        value = self.inner.extract(record)
        if self.mapping is None:
            return self.default if value is None else value
        table = dict(self.mapping)
        if isinstance(value, list):
            present = {str(v) for v in value}
            candidates = [k for k, _ in self.mapping if k in present]
            if not candidates:
                return self.default
            return table[candidates[-1] if self.pickLast else candidates[0]]
        if value is None:
            return self.default
        return table.get(str(value), self.default)


@attrs.frozen
class FieldMapping:
    """
    How an inventory API's records become inventory entries: a L{Field} for
    the node id, hostname and status, one per tag, and whether tag values are
    trimmed and lower-cased (the legacy Nimbus2 sync did).
    """

    id: Field
    hostname: Field
    status: Optional[Field] = None
    tags: tuple[tuple[str, Field], ...] = ()
    lowercaseTags: bool = False

    @classmethod
    def fromConfig(cls, config: Any, where: str = "fields") -> "FieldMapping":
        """
        @raise ValueError: naming the key and what is wrong.
        """
        config = {} if config is None else config
        if not isinstance(config, dict):
            raise ValueError(f"{where}: must be a mapping")
        unknown = set(config) - {"id", "hostname", "status", "tags", "lowercase_tags"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
        tags = config.get("tags") or {}
        if not isinstance(tags, dict):
            raise ValueError(f"{where}.tags: must be a mapping of tag name to field")
        lowercase = config.get("lowercase_tags", False)
        if not isinstance(lowercase, bool):
            raise ValueError(f"{where}.lowercase_tags: must be true or false")
        status = config.get("status")
        return cls(
            id=Field.fromConfig(config.get("id", "id"), f"{where}.id"),
            hostname=Field.fromConfig(config.get("hostname", "hostname"), f"{where}.hostname"),
            status=None if status is None else Field.fromConfig(status, f"{where}.status"),
            tags=tuple((str(t), Field.fromConfig(s, f"{where}.tags.{t}")) for t, s in tags.items()),
            lowercaseTags=lowercase,
        )

    def entry(self, record: Any) -> dict[str, Any]:
        """
        One inventory entry for L{am.core.scheduler.Scheduler.applyInventory}.

        @raise InventoryError: if the record has no usable id.
        """
        nodeid = self.id.extract(record)
        if isinstance(nodeid, bool) or not isinstance(nodeid, (str, int)) or not str(nodeid).strip():
            raise InventoryError(f"record without a usable id: {_short(record)}")
        status = self.status.extract(record) if self.status is not None else NODE_ACTIVE
        if status not in NODE_STATUSES:
            raise InventoryError(
                f"node {nodeid}: status {status!r} is not one of {', '.join(NODE_STATUSES)}"
            )
        hostname = self.hostname.extract(record)
        tags = {}
        for tag, field in self.tags:
            value = field.extract(record)
            if value is None or isinstance(value, (dict, list)):
                continue
            text = str(value)
            if self.lowercaseTags:
                text = text.strip().lower()
            if text:
                tags[tag] = text
        return {
            "id": str(nodeid).strip(),
            "hostname": "" if hostname is None else str(hostname),
            "status": status,
            "tags": tags,
        }


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def entriesFromDocument(
    document: Any, mapping: FieldMapping, listKey: Optional[str] = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """
    Turn an inventory answer into entries: the document is a JSON list, or an
    object holding the list under C{listKey} (a dotted path).

    @return: the entries and the problems with records that were skipped.
    @raise InventoryError: if there is no list where one is expected.
    """
    records = document if listKey is None else _lookup(document, listKey)
    if not isinstance(records, list):
        where = "the answer" if listKey is None else f"key {listKey!r}"
        raise InventoryError(f"expected a list of nodes at {where}, got {_short(document)}")
    entries, problems, seen = [], [], set()
    for record in records:
        try:
            entry = mapping.entry(record)
        except InventoryError as e:
            problems.append(str(e))
            continue
        if entry["id"] in seen:
            problems.append(f"node {entry['id']} listed twice; the first one is used")
            continue
        seen.add(entry["id"])
        entries.append(entry)
    return entries, problems


#: The static file holds entries in their own shape.
STATIC_MAPPING = FieldMapping(
    id=Field(paths=("id",)), hostname=Field(paths=("hostname",)), status=Field(
        inner=Field(paths=("status",)), default=NODE_ACTIVE
    ),
)


# LibYAML's safe loader when PyYAML was built with it (about 7 times faster:
# 0.3 s -> 0.045 s for 1,000 nodes), else PyYAML's own.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The entries a read with keep=True left for the next read of the same
# unchanged file: at start-up the configuration check reads the inventory and
# the first sync would read it again. Handed over once; at most one kept.
_handOver: dict[tuple, list[dict[str, Any]]] = {}


def _identity(path: str, status: os.stat_result) -> tuple:
    return (path, status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def loadStaticInventory(path: str, keep: bool = False) -> list[dict[str, Any]]:
    """
    Read a static inventory: a YAML list of C{{id, hostname, status, tags}}
    (or a mapping with that list under C{nodes}). With C{keep}, the next
    read of the same file, if it has not changed (same inode, size, times),
    takes these entries instead of parsing it again.

    @raise InventoryError: with the file name and the first problem.
    """
    try:
        known = _handOver.pop(_identity(path, os.stat(path)), None)
        if known is not None:
            return known
        with open(path, "rb") as f:
            identity = _identity(path, os.fstat(f.fileno()))
            document = yaml.load(f, Loader=_LOADER)
    except OSError as e:
        raise InventoryError(f"{path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InventoryError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    entries = _entries(path, document)
    if keep:
        _handOver.clear()
        _handOver[identity] = entries
    return entries


def _entries(path: str, document: Any) -> list[dict[str, Any]]:
    """
    The inventory entries of a parsed static inventory file.
    """
    if isinstance(document, dict):
        document = document.get("nodes")
    if not isinstance(document, list):
        raise InventoryError(f"{path}: must hold a list of nodes (or 'nodes:' with a list)")
    entries = []
    seen = set()
    for i, record in enumerate(document):
        where = f"{path}: node #{i + 1}"
        if not isinstance(record, dict):
            raise InventoryError(f"{where}: must be a mapping with id, hostname, status, tags")
        unknown = set(record) - {"id", "hostname", "status", "tags"}
        if unknown:
            raise InventoryError(f"{where}: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
        tags = record.get("tags") or {}
        if not isinstance(tags, dict) or any(isinstance(v, (dict, list)) for v in tags.values()):
            raise InventoryError(f"{where}: tags must map tag names to plain values")
        try:
            entry = STATIC_MAPPING.entry(record)
        except InventoryError as e:
            raise InventoryError(f"{where}: {e}") from None
        if entry["id"] in seen:
            raise InventoryError(f"{where}: node {entry['id']} is listed twice")
        seen.add(entry["id"])
        entry["tags"] = {str(k): str(v) for k, v in tags.items() if v is not None}
        entries.append(entry)
    return entries
