# -*- test-case-name: tests.test_rest_openapi -*-
"""
A small JSON Schema checker for the subset our OpenAPI 3.1 document uses, so
tests can hold real responses against it without a new dependency.

Supported: C{$ref} (local), C{type} (one or a list), C{properties},
C{required}, C{additionalProperties} (boolean or schema), C{items}, C{enum},
C{const}, C{anyOf}, C{oneOf}, C{allOf}, C{minimum}, C{maximum}, C{minItems},
C{maxItems}, C{minLength}, C{pattern}, C{propertyNames}. Annotations are ignored; any other
keyword is an error, so the document cannot silently rely on something this
checker does not enforce.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

_ANNOTATIONS = frozenset(
    {"description", "title", "examples", "example", "format", "default", "deprecated", "readOnly", "$comment"}
)
_KEYWORDS = frozenset(
    {
        "$ref", "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "anyOf", "oneOf", "allOf", "minimum", "maximum", "minItems", "maxItems", "minLength", "pattern",
        "propertyNames",
    }
)


class SchemaError(Exception):
    """
    The schema uses something this checker does not support.
    """


def _isType(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise SchemaError(f"unknown type {name!r}")


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1.
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


def resolve(root: Mapping[str, Any], reference: str) -> Any:
    """
    Follow a local C{#/a/b} reference.
    """
    if not reference.startswith("#/"):
        raise SchemaError(f"only local references are supported: {reference}")
    node: Any = root
    for part in reference[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def errors(instance: Any, schema: Any, root: Optional[Mapping[str, Any]] = None, where: str = "$") -> list[str]:
    """
    Every way C{instance} fails C{schema}; empty when it conforms.
    """
    root = root if root is not None else schema
    if schema is True:
        return []
    if schema is False:
        return [f"{where}: no value allowed here"]
    unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise SchemaError(f"unsupported keywords {sorted(unknown)} at {where}")
    found: list[str] = []
    if "$ref" in schema:
        found += errors(instance, resolve(root, schema["$ref"]), root, where)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_isType(instance, t) for t in types):
            return found + [f"{where}: {instance!r:.60} is not of type {'/'.join(types)}"]
    if "enum" in schema and not any(_equal(instance, v) for v in schema["enum"]):
        found.append(f"{where}: {instance!r:.60} is not one of {schema['enum']}")
    if "const" in schema and not _equal(instance, schema["const"]):
        found.append(f"{where}: {instance!r:.60} is not {schema['const']!r}")
    for key in ("anyOf", "oneOf"):
        if key in schema:
            matching = sum(1 for s in schema[key] if not errors(instance, s, root, where))
            if matching == 0 or (key == "oneOf" and matching > 1):
                found.append(f"{where}: matches {matching} of the {key} alternatives")
    for sub in schema.get("allOf", ()):
        found += errors(instance, sub, root, where)
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            found.append(f"{where}: {instance} < {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            found.append(f"{where}: {instance} > {schema['maximum']}")
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            found.append(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            found.append(f"{where}: {instance!r:.60} does not match {schema['pattern']}")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            found.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            found.append(f"{where}: more than {schema['maxItems']} items")
        if "items" in schema:
            for index, item in enumerate(instance):
                found += errors(item, schema["items"], root, f"{where}[{index}]")
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in instance:
                found.append(f"{where}: missing required {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, value in instance.items():
            if "propertyNames" in schema:
                found += errors(name, schema["propertyNames"], root, f"{where} (a name in it)")
            if name in properties:
                found += errors(value, properties[name], root, f"{where}.{name}")
            else:
                found += errors(value, extra, root, f"{where}.{name}")
    return found


def responseSchema(document: Mapping[str, Any], template: str, method: str, code: int) -> Any:
    """
    The schema the document gives for one response, falling back to C{default}.

    @raise KeyError: the document does not describe this response.
    """
    responses = document["paths"][template][method.lower()]["responses"]
    response = responses.get(str(code)) or responses["default"]
    return response["content"]["application/json"]["schema"]


def matchTemplate(document: Mapping[str, Any], path: str) -> Optional[str]:
    """
    The document's path template for a concrete path (without C{/v1}),
    preferring literal segments over C{{parameters}}.
    """
    segments = [s for s in path.strip("/").split("/")]
    best: Optional[tuple[int, str]] = None
    for template in document["paths"]:
        parts = template.strip("/").split("/")
        if len(parts) != len(segments):
            continue
        score = 0
        for want, got in zip(parts, segments):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    break
            elif want == got:
                score += 1
            else:
                break
        else:
            if best is None or score > best[0]:
                best = (score, template)
    return best[1] if best else None
