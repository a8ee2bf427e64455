"""The metadata filter language: specified once (:data:`FILTER_SCHEMA`, docs/filters.md), parsed
once (:func:`parse_filter`), then evaluated or translated by every store
(``retrievers.stores.filters``: the exact stores in Python, Qdrant and qdrant-edge as native
filters).

A filter is a JSON object; every condition in it must hold. The operators are MongoDB's query
operators (also those of LangChain's vector stores), so one filter reads the same over HTTP, MCP,
``rag search --filter``, LangChain and LlamaIndex::

    {"lang": "en"}                              equality ($eq); a list-valued field: contains
    {"lang": ["en", "de"]}                      any of (shorthand for $in)
    {"lang": {"$in": ["en", "de"]}}             any of;   {"$nin": [...]} none of
    {"lang": {"$ne": "en"}}                     not equal (a missing field is not equal)
    {"year": {"$gte": 2018, "$lt": 2022}}       range: $gt, $gte, $lt, $lte (numbers)
    {"year": {"gte": 2018}}                     range, the older spelling without "$"
    {"page": {"$exists": true}}                 the field is set (not missing, null or [])
    {"$and": [F, ...]}, {"$or": [F, ...]}, {"$not": F}

:func:`parse_filter` returns the canonical form every store reads: each field condition is a dict
of ``$`` operators (``{"lang": {"$eq": "en"}}``), logical keys hold canonical filters. Anything
else (an unknown operator, an empty list, a range over a string) is a :class:`ConfigError` with
one line that names it: a 422 over HTTP, an MCP tool error, exit 2 in the CLI.

>>> parse_filter({"lang": ["en", "de"], "year": {"gte": 2018}})
{'lang': {'$in': ['en', 'de']}, 'year': {'$gte': 2018}}
>>> parse_filter({"year": {"$regex": "19.."}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
rag.core.errors.ConfigError: filter on 'year': unknown operator '$regex'; use one of $eq, $ne, ...
"""

from __future__ import annotations

from typing import Any

from rag.core.errors import ConfigError

FIELD_OPS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists")
RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")
LOGICAL_OPS = ("$and", "$or", "$not")
_LEGACY_RANGE = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}
MAX_DEPTH = 8  # nested $and/$or/$not

_SCALAR = {"type": ["string", "integer", "number", "boolean"]}
_NUMBER = {"type": "number"}
_LIST = {"type": "array", "items": _SCALAR, "minItems": 1}
_CONDITION = {
    "description": "a value (equality), a list (any of), or an object of operators",
    "anyOf": [
        _SCALAR,
        _LIST,
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "$eq": _SCALAR,
                "$ne": _SCALAR,
                "$in": _LIST,
                "$nin": _LIST,
                **{op: _NUMBER for op in RANGE_OPS},
                **{op.lstrip("$"): _NUMBER for op in RANGE_OPS},
                "$exists": {"type": "boolean"},
            },
        },
    ],
}
FILTER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "ragnodes metadata filter",
    "description": "every condition must hold; see docs/filters.md",
    "type": "object",
    "properties": {
        "$and": {"type": "array", "items": {"$ref": "#"}, "minItems": 1},
        "$or": {"type": "array", "items": {"$ref": "#"}, "minItems": 1},
        "$not": {"$ref": "#"},
    },
    "patternProperties": {"^[^$]": _CONDITION},
    "additionalProperties": False,
}
# the same, embedded in another schema (a tool's arguments): no "#" self-reference, the parts of
# $and/$or/$not are objects that the parser checks. An OpenAPI document can say more: there
# :func:`openapi_filter_refs` turns every part into a reference to one recursive component, so a
# request valid under the schema is one the parser accepts (up to MAX_DEPTH nesting)
PART_MARK = "x-ragnodes-filter-part"
_PART = {"type": "object", "description": "a filter", PART_MARK: True}
FILTER_FIELD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "a metadata filter; see docs/filters.md",
    "properties": {
        "$and": {"type": "array", "items": _PART, "minItems": 1},
        "$or": {"type": "array", "items": _PART, "minItems": 1},
        "$not": _PART,
    },
    "patternProperties": {"^[^$]": _CONDITION},
    "additionalProperties": False,
}
OPENAPI_COMPONENT = "MetadataFilter"


def openapi_filter_refs(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (an OpenAPI 3.1 document) with every filter part (``$and``/``$or`` items,
    ``$not``) a ``$ref`` to ``components.schemas.MetadataFilter``, the filter schema itself:
    the document then describes exactly the filters :func:`parse_filter` takes."""
    ref = {"$ref": f"#/components/schemas/{OPENAPI_COMPONENT}"}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get(PART_MARK):
                return dict(ref)
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out = walk(doc)
    component = walk(FILTER_FIELD_SCHEMA)  # a new dict: the constant stays as it is
    out.setdefault("components", {}).setdefault("schemas", {})[OPENAPI_COMPONENT] = component
    return out


FILTER_DESCRIPTION = (
    'metadata filter (docs/filters.md), all conditions must hold: {"year": 2020} (equality), '
    '{"lang": ["en", "de"]} or {"lang": {"$in": [...]}} (any of), $nin, $ne, '
    '{"year": {"$gte": 2018, "$lt": 2022}} (range), {"page": {"$exists": true}}, '
    "$and / $or / $not; applied by the first-stage retriever, before any reranker"
)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


def _scalar(where: str, op: str, v: Any) -> Any:
    if not _is_scalar(v):
        raise ConfigError(f"{where}: {op} takes a string, number or boolean, got {v!r}")
    return v


def _values(where: str, op: str, v: Any) -> list[Any]:
    if not isinstance(v, (list, tuple, set)):
        raise ConfigError(f"{where}: {op} takes a list of values, got {v!r}")
    if not v:
        raise ConfigError(f"{where}: an empty list matches nothing; drop it or add values")
    return [_scalar(where, op, x) for x in v]


def _condition(key: str, cond: Any) -> dict[str, Any]:
    """One field's condition in canonical form (a dict of ``$`` operators)."""
    where = f"filter on {key!r}"
    if isinstance(cond, (list, tuple, set)):
        return {"$in": _values(where, "a list", cond)}
    if not isinstance(cond, dict):
        if cond is None:
            raise ConfigError(f"{where}: null is not a value; use {{'$exists': false}}")
        return {"$eq": _scalar(where, "equality", cond)}
    if not cond:
        raise ConfigError(f"{where}: an empty condition; give a value or an operator")
    out: dict[str, Any] = {}
    for op, v in cond.items():
        canon = _LEGACY_RANGE.get(op, op)
        if canon not in FIELD_OPS:
            raise ConfigError(
                f"{where}: unknown operator {op!r}; use one of {', '.join(FIELD_OPS)}"
            )
        if canon in out:
            raise ConfigError(f"{where}: {canon} is given twice")
        out[canon] = _operand(where, canon, v)
    return out


def _operand(where: str, op: str, v: Any) -> Any:
    """The checked value of operator ``op``."""
    if op in RANGE_OPS:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}: {op} takes a number, got {v!r}")
        return v
    if op in ("$in", "$nin"):
        return _values(where, op, v)
    if op == "$exists":
        if not isinstance(v, bool):
            raise ConfigError(f"{where}: $exists takes true or false, got {v!r}")
        return v
    return _scalar(where, op, v)


def parse_filter(flt: Any, _depth: int = 0) -> dict[str, Any] | None:
    """``flt`` (a dict in the language above, or ``None``) in canonical form; a
    :class:`ConfigError` with one line for anything the language does not have."""
    if flt is None:
        return None
    if hasattr(flt, "model_dump"):  # a pydantic model of a filter
        flt = flt.model_dump(exclude_none=True)
    if not isinstance(flt, dict):
        raise ConfigError(f"filter must be a dict, got {type(flt).__name__}")
    if _depth > MAX_DEPTH:
        raise ConfigError(f"a filter nests $and/$or/$not at most {MAX_DEPTH} deep")
    out: dict[str, Any] = {}
    for key, cond in flt.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"a filter's field names are non-empty strings, got {key!r}")
        if key in ("$and", "$or"):
            if not isinstance(cond, (list, tuple)) or not cond:
                raise ConfigError(f"filter {key} takes a non-empty list of filters, got {cond!r}")
            out[key] = [_part(key, part, _depth) for part in cond]
        elif key == "$not":
            out[key] = _part(key, cond, _depth)
        elif key.startswith("$"):
            raise ConfigError(
                f"unknown filter operator {key!r}; at the top level use a field name or one of "
                f"{', '.join(LOGICAL_OPS)}"
            )
        else:
            out[key] = _condition(key, cond)
    return out


def _part(op: str, part: Any, depth: int) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise ConfigError(f"filter {op} takes filters (JSON objects), got {part!r}")
    return parse_filter(part, depth + 1) or {}
