"""Framework-native metadata filters in ragnodes' one filter language (:mod:`rag.core.filters`,
docs/filters.md), parsed by its one parser.

* LangChain's filter dicts use MongoDB's operators, as ragnodes does (``$eq``, ``$ne``, ``$in``,
  ``$nin``, ``$gt``..``$lte``, ``$exists``, ``$and``, ``$or``, ``$not``): they are parsed as given.
* LlamaIndex ``MetadataFilters`` (``MetadataFilter(key, value, operator)``, condition ``and`` /
  ``or`` / ``not``, nested) map operator by operator: ``==`` ``!=`` ``in`` ``nin`` ``>`` ``>=``
  ``<`` ``<=`` ``is_empty``.

An operator the language does not have (``$regex``, ``text_match``, ...) raises a
:class:`~rag.core.errors.ConfigError` naming it, never a silently wider result.

>>> from_langchain({"year": {"$gte": 2018, "$lt": 2022}, "$and": [{"lang": {"$in": ["en"]}}]})
{'year': {'$gte': 2018, '$lt': 2022}, '$and': [{'lang': {'$in': ['en']}}]}
"""

from __future__ import annotations

from typing import Any

from rag.core.errors import ConfigError
from rag.core.filters import parse_filter

_LI_OPS = {
    "==": "$eq",
    "!=": "$ne",
    "in": "$in",
    "nin": "$nin",
    ">": "$gt",
    ">=": "$gte",
    "<": "$lt",
    "<=": "$lte",
}


def from_langchain(flt: dict[str, Any] | None) -> dict[str, Any] | None:
    """A LangChain filter dict in canonical form (``None`` stays ``None``)."""
    if flt is not None and not isinstance(flt, dict):
        raise ConfigError(f"a LangChain filter is a dict, got {type(flt).__name__}")
    return parse_filter(flt)


def _llama_part(f: Any) -> dict[str, Any]:
    if hasattr(f, "filters"):  # nested MetadataFilters
        return _llama(f)
    op = str(getattr(f.operator, "value", f.operator))
    if op == "is_empty":
        return {f.key: {"$exists": False}}
    if op not in _LI_OPS:
        raise ConfigError(
            f"filter operator {op!r} on {f.key!r} is not supported; "
            f"use {', '.join([*_LI_OPS, 'is_empty'])}"
        )
    value = list(f.value) if op in ("in", "nin") else f.value
    return {f.key: {_LI_OPS[op]: value}}


def _llama(filters: Any) -> dict[str, Any]:
    condition = str(getattr(getattr(filters, "condition", None), "value", "and") or "and").lower()
    parts = [_llama_part(f) for f in filters.filters]
    if condition == "and":
        return {"$and": parts} if parts else {}
    if condition == "or":
        return {"$or": parts}
    if condition == "not":
        return {"$not": {"$and": parts}}
    raise ConfigError(f"filter condition {condition!r} is not supported (and, or, not)")


def from_llamaindex(filters: Any) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` (or ``None``) in canonical form."""
    if filters is None:
        return None
    return parse_filter(_llama(filters))
