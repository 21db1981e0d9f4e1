# -*- test-case-name: tests.test_rest_params -*-
"""
Request parameters: the query string merged with a body that is a JSON object,
a urlencoded form or a multipart form, whatever the method (Twisted parses
bodies for POST only; nodes send their heartbeats as PUT forms), plus the
loosely typed legacy values (options strings, node lists, truthy flags).

Every failure is an L{am.core.errors.BadRequest} naming the parameter, or
L{BodyTooLarge}; nothing here lets a Python exception escape.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import json
from typing import Any, Mapping, Optional, Sequence
from urllib.parse import unquote_to_bytes

from am.core.errors import BadRequest, NotFound
from am.core.values import integer, requireStorable, storable

#: The REST face's body limit; the controller's site limit is the largest of the faces'.
MAX_BODY = 1 << 20
# The store keeps signed 64-bit integers; larger numbers are refused on entry.
MAX_INTEGER = 2**63 - 1

_FALSE = ("", "0", "false", "no", "off", "none", "null")
_TRUE = ("1", "true", "yes", "on")


class BodyTooLarge(Exception):
    """
    The request body exceeds the configured limit (HTTP 413).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not valid UTF-8.") from None


def _fromMultiDict(pairs: Mapping[bytes, list[bytes]]) -> dict[str, Any]:
    """
    Form fields: one value gives a string, a repeated key a list of strings.
    """
    result: dict[str, Any] = {}
    for rawKey, rawValues in pairs.items():
        key = _decode(rawKey, "A parameter name")
        values = [_decode(v, f"Parameter {key}") for v in rawValues]
        result[key] = values[0] if len(values) == 1 else values
    return result


def unquote(raw: bytes) -> bytes:
    """
    What C{urllib.parse.unquote_to_bytes} returns, computed in C: each
    C{%xx} becomes a C{\\xhh} escape for C{codecs.escape_decode} (backslashes
    escaped first). The standard function loops in Python over every escape:
    a heartbeat's C{interfaces} (JSON, every quote and brace escaped) cost
    10 us. A C{%} not followed by two hex digits makes the decoder fail, and
    the standard function then leaves it as it is.
    """
    if b"%" not in raw:
        return raw
    try:
        return codecs.escape_decode(raw.replace(b"\\", b"\\\\").replace(b"%", b"\\x"))[0]  # type: ignore[no-any-return]
    except ValueError:
        return unquote_to_bytes(raw)


def parseForm(raw: bytes) -> dict[str, Any]:
    """
    A urlencoded form (or query string) as bytes in, text out: C{+} is a
    space, C{%xx} an octet, a key without C{=} has the empty value.
    """
    pairs: dict[bytes, list[bytes]] = {}
    for item in raw.split(b"&"):
        if not item:
            continue
        key, _, value = item.partition(b"=")
        key = unquote(key.replace(b"+", b" "))
        pairs.setdefault(key, []).append(unquote(value.replace(b"+", b" ")))
    return _fromMultiDict(pairs)


def parseQuery(uri: bytes) -> dict[str, Any]:
    """
    The query-string parameters of a request URI.
    """
    _, _, query = uri.partition(b"?")
    return parseForm(query)


def parseJSON(text: str, what: str = "body") -> Any:
    """
    Decode JSON, turning every decoder failure (syntax, absurd nesting, huge
    integers) into a 400 that says where; numbers must fit in 64 bits.
    """
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"Malformed JSON in {what}: {e}", parameter=what) from None
    checkNumbers(value, what)
    return value


def checkNumbers(value: Any, what: str) -> None:
    """
    Refuse numbers the store cannot hold (and that no parameter needs).
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            if not abs(item) <= MAX_INTEGER:
                raise BadRequest(f"Numbers in {what} must fit in 64 bits.", parameter=what)


def recordId(text: str, message: str) -> int:
    """
    A record id from the path: decimal digits that fit the store, else the
    record does not exist.
    """
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise NotFound(message)
    return int(value)


def _multipart(body: bytes, contentType: bytes) -> dict[str, Any]:
    header = b"MIME-Version: 1.0\r\nContent-Type: " + contentType + b"\r\n\r\n"
    message = email.message_from_bytes(header + body, policy=email.policy.compat32)
    if not message.is_multipart():
        raise BadRequest("Malformed multipart/form-data body.")
    pairs: dict[bytes, list[bytes]] = {}
    parts: Any = message.get_payload()  # a multipart message: its parts
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if not name or not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True) or b""
        pairs.setdefault(name.encode("utf-8"), []).append(payload)
    return _fromMultiDict(pairs)


def readBody(request: Any, maxBody: int = MAX_BODY) -> bytes:
    """
    The raw request body, refusing anything over C{maxBody} bytes.

    @raise BodyTooLarge: when the body (or its announced length) is too big.
    """
    announced = request.requestHeaders.getRawHeaders(b"content-length")
    if announced:
        try:
            if int(announced[0]) > maxBody:
                raise BodyTooLarge(maxBody)
        except ValueError:
            raise BadRequest("Malformed Content-Length header.") from None
    content = getattr(request, "content", None)
    if content is None:
        return b""
    content.seek(0, 2)
    size = content.tell()
    if size > maxBody:
        raise BodyTooLarge(maxBody)
    content.seek(0)
    body = content.read()
    content.seek(0)
    return body


def parseBody(body: bytes, contentType: Optional[bytes]) -> dict[str, Any]:
    """
    A body as parameters. JSON is recognised by its content type or by a
    leading C{{} (the legacy server tried JSON first, and C{curl -d} labels
    JSON as a form); it must be an object.
    """
    if not body.strip():
        return {}
    media = (contentType or b"").split(b";", 1)[0].strip().lower()
    if media == b"multipart/form-data":
        return _multipart(body, contentType or b"")
    if media.endswith(b"json") or body.lstrip()[:1] in (b"{", b"["):
        value = parseJSON(_decode(body, "The body"))
        if not isinstance(value, dict):
            raise BadRequest("The JSON body must be an object.", parameter="body")
        return value
    return parseForm(body)


def readParams(request: Any, maxBody: int = MAX_BODY) -> dict[str, Any]:
    """
    Query-string parameters overridden by body parameters; text no store can
    hold (a JSON C{\\ud800} escape, a NUL) is a 400 naming the parameter, on
    every route (the core's rule, applied before any handler runs).
    """
    params = parseQuery(request.uri)
    body = readBody(request, maxBody)
    params.update(parseBody(body, request.getHeader(b"content-type")))
    if not storable(params):  # one walk; only a refusal looks for the name
        for key, value in params.items():
            requireStorable("A parameter name", key)
            requireStorable(key, value)
    return params


# Typed access to single parameters.


def text(params: Mapping[str, Any], name: str, default: Optional[str] = None) -> Optional[str]:
    """
    A string parameter (numbers are accepted and turned into their text).
    """
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise BadRequest(f"{name} must be a string", parameter=name)
    return str(value)


def intParam(params: Mapping[str, Any], name: str, default: Any = None, minimum: Optional[int] = None) -> Any:
    """
    An integer parameter; C{default} (returned unchecked) when absent (or JSON
    C{null}). An empty string is not an integer: 400 naming the parameter (as
    the legacy server refused it, and as the OpenAPI document says).
    """
    value = params.get(name)
    if value is None:
        return default
    return integer(name, value, minimum)


def flag(name: str, value: Any) -> bool:
    """
    Truthiness for legacy flags, fixed: C{"0"}, C{"false"}, C{0} and C{false}
    are false (the legacy server took the string C{"0"} for true).
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _FALSE:
            return False
        if word in _TRUE:
            return True
    raise BadRequest(f"{name} must be a boolean (0/1, true/false)", parameter=name)


def jsonValue(name: str, value: Any, kind: type) -> Any:
    """
    A structured parameter that forms carry as a JSON string and JSON bodies
    as the value itself; the result must be of C{kind} (C{list} or C{dict}).
    """
    if isinstance(value, str):
        value = parseJSON(value, name) if value.strip() else kind()
    if not isinstance(value, kind):
        raise BadRequest(f"{name} must be a JSON {'object' if kind is dict else 'list'}", parameter=name)
    return value


def parseOptions(value: Any) -> dict[str, Any]:
    """
    The C{options} parameter: an object, a JSON string holding an object, or a
    C{k=v&k=v} string (values stay strings); empty means none.
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):
        raise BadRequest("options must be an object, a JSON string or k=v&k=v", parameter="options", code="sc2")
    raw = value.strip()
    if not raw:
        return {}
    if raw[0] in "{[":
        try:
            parsed = parseJSON(raw, "options")
        except BadRequest as e:
            raise BadRequest(f"options string could not be parsed. {e.message}", parameter="options", code="sc2")
        if not isinstance(parsed, dict):
            raise BadRequest("options must be a JSON object", parameter="options", code="sc2")
        return parsed
    result: dict[str, Any] = {}
    for item in raw.split("&"):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise BadRequest(
                f"options string could not be parsed. Element {item!r} is not key=value.",
                parameter="options",
                code="sc2",
            )
        result[key.strip()] = val
    return result


def nodeList(value: Any) -> Optional[list[str]]:
    """
    The C{nodes} option: a comma-separated string, a list of ids, or a JSON
    list in a string (what the official MONROE Python client sends); C{None}
    when absent or empty (no preselection).
    """
    if value is None:
        return None
    if isinstance(value, str) and value.strip().startswith("["):
        value = parseJSON(value, "nodes")
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        items: Sequence[Any] = str(value).split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise BadRequest("nodes must be a comma-separated string or a list of node ids", parameter="nodes")
    nodes = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise BadRequest("nodes must be a comma-separated string or a list of node ids", parameter="nodes")
        item = str(item).strip()
        if item:
            nodes.append(item)
    return nodes or None


def requireParams(
    params: Mapping[str, Any], required: Sequence[str], optional: Sequence[str] = ()
) -> None:
    """
    Refuse with the legacy message when required parameters are absent.
    """
    missing = [name for name in required if params.get(name) is None]
    if missing:
        raise BadRequest(
            f"Parameters missing (required: {', '.join(required)}"
            f"{' | optional: ' + ', '.join(optional) if optional else ''}"
            f", provided: {', '.join(sorted(params))}).",
            missing=missing,
        )
