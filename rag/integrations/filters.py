"""Framework-native metadata filters translated to ragnodes' filter syntax
(``retrievers.stores.filters``: ``{"k": v}`` equality, ``{"k": [a, b]}`` any of,
``{"k": {"gte": x, "lt": y}}`` range; all conditions must hold).

* LangChain's filter dicts (the MongoDB-style operators of Chroma, PGVector and most LangChain
  vector stores): ``{"year": {"$gte": 2018}, "lang": {"$in": ["en"]}, "$and": [...]}``;
  a plain ``{"k": v}`` is equality.
* LlamaIndex ``MetadataFilters`` (``MetadataFilter(key, value, operator)``, condition AND).

Operators ragnodes cannot express (``$ne``, ``$nin``, ``$or``, ``text_match``, ...) raise a
:class:`~rag.errors.ConfigError` naming them, never a silently wider result.

>>> from_langchain({"year": {"$gte": 2018, "$lt": 2022}, "$and": [{"lang": {"$in": ["en"]}}]})
{'year': {'gte': 2018, 'lt': 2022}, 'lang': ['en']}
"""

from __future__ import annotations

from typing import Any

from rag.errors import ConfigError

_RANGE = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_LI_RANGE = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def _merge(out: dict[str, Any], key: str, cond: Any) -> None:
    """Add a condition on ``key``; two ranges on one key merge, anything else must not clash."""
    if key in out and isinstance(out[key], dict) and isinstance(cond, dict):
        clash = set(out[key]) & set(cond)
        if clash:
            raise ConfigError(f"filter on {key!r} sets {sorted(clash)} twice")
        out[key] = {**out[key], **cond}
    elif key in out and out[key] != cond:
        raise ConfigError(f"filter on {key!r} has two conditions ragnodes cannot combine")
    else:
        out[key] = cond


def from_langchain(flt: dict[str, Any] | None) -> dict[str, Any] | None:
    """A LangChain filter dict in ragnodes' syntax (``None`` stays ``None``)."""
    if flt is None:
        return None
    if not isinstance(flt, dict):
        raise ConfigError(f"a LangChain filter is a dict, got {type(flt).__name__}")
    out: dict[str, Any] = {}
    for key, cond in flt.items():
        if key == "$and":
            for part in cond:
                for k, v in (from_langchain(part) or {}).items():
                    _merge(out, k, v)
            continue
        if key.startswith("$"):
            raise ConfigError(f"filter operator {key!r} is not supported (only $and)")
        _condition(out, key, cond)
    return out


def _condition(out: dict[str, Any], key: str, cond: Any) -> None:
    """One LangChain condition on ``key``: a value (equality) or ``{"$op": value, ...}``."""
    if not isinstance(cond, dict) or not any(op.startswith("$") for op in cond):
        _merge(out, key, cond)  # equality (or an already-ragnodes range)
        return
    for op, value in cond.items():
        if op == "$eq":
            _merge(out, key, value)
        elif op == "$in":
            _merge(out, key, list(value))
        elif op in _RANGE:
            _merge(out, key, {_RANGE[op]: value})
        else:
            raise ConfigError(
                f"filter operator {op!r} on {key!r} is not supported; "
                "use $eq, $in, $gt, $gte, $lt, $lte, $and"
            )


def from_llamaindex(filters: Any) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` (or ``None``) in ragnodes' syntax."""
    if filters is None:
        return None
    condition = str(getattr(getattr(filters, "condition", None), "value", "and") or "and")
    if condition.lower() != "and":
        raise ConfigError(f"filter condition {condition!r} is not supported (only 'and')")
    out: dict[str, Any] = {}
    for f in filters.filters:
        if hasattr(f, "filters"):  # nested MetadataFilters
            for k, v in (from_llamaindex(f) or {}).items():
                _merge(out, k, v)
            continue
        op = str(getattr(f.operator, "value", f.operator))
        if op == "==":
            _merge(out, f.key, f.value)
        elif op == "in":
            _merge(out, f.key, list(f.value))
        elif op in _LI_RANGE:
            _merge(out, f.key, {_LI_RANGE[op]: f.value})
        else:
            raise ConfigError(
                f"filter operator {op!r} on {f.key!r} is not supported; use ==, in, >, >=, <, <="
            )
    return out
