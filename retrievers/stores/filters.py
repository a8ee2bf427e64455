"""Metadata filters shared by every store: one small syntax, evaluated here or translated.

Syntax (all conditions must hold)::

    {"year": 2020}                      equality
    {"lang": ["en", "de"]}              any of
    {"year": {"gte": 2018, "lt": 2022}} range (gt, gte, lt, lte)

>>> matches({"year": 2020, "lang": "en"}, {"year": {"gte": 2019}, "lang": ["en", "fr"]})
True
"""

from __future__ import annotations

from typing import Any

from rag.errors import ConfigError

RANGE_OPS = ("gt", "gte", "lt", "lte")


def validate_filter(flt: dict[str, Any] | None) -> dict[str, Any] | None:
    if flt is None:
        return None
    if not isinstance(flt, dict):
        raise ConfigError(f"filter must be a dict, got {type(flt).__name__}")
    for key, cond in flt.items():
        if isinstance(cond, dict):
            bad = set(cond) - set(RANGE_OPS)
            if bad or not cond:
                raise ConfigError(
                    f"filter on {key!r}: range operators are {RANGE_OPS}, got {sorted(cond)}"
                )
    return flt


def _match_one(value: Any, cond: Any) -> bool:
    if isinstance(cond, dict):
        if value is None:
            return False
        try:
            return all(
                (op == "gt" and value > b)
                or (op == "gte" and value >= b)
                or (op == "lt" and value < b)
                or (op == "lte" and value <= b)
                for op, b in cond.items()
            )
        except TypeError:
            return False
    if isinstance(cond, (list, tuple, set)):
        if isinstance(value, list):
            return any(v in cond for v in value)
        return value in cond
    if isinstance(value, list):
        return cond in value
    return bool(value == cond)


def matches(metadata: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    """True when ``metadata`` satisfies every condition of ``flt``."""
    if not flt:
        return True
    return all(_match_one(metadata.get(k), c) for k, c in flt.items())


def to_qdrant(flt: dict[str, Any] | None, prefix: str = "metadata.") -> Any:
    """Translate to a ``qdrant_client.models.Filter`` over payload keys ``metadata.<field>``."""
    if not flt:
        return None
    from qdrant_client import models

    return translate(flt, prefix, models, models.Range)


def translate(flt: dict[str, Any], prefix: str, api: Any, range_cls: Any) -> Any:
    """``flt`` as a Qdrant ``Filter`` built from ``api``'s classes (qdrant-client's ``models``
    or ``qdrant_edge``, which share the names but for the range class)."""
    must = []
    for key, cond in validate_filter(flt).items():  # type: ignore[union-attr]
        field = prefix + key
        if isinstance(cond, dict):
            must.append(api.FieldCondition(key=field, range=range_cls(**cond)))
        elif isinstance(cond, (list, tuple, set)):
            must.append(api.FieldCondition(key=field, match=api.MatchAny(any=list(cond))))
        else:
            must.append(api.FieldCondition(key=field, match=api.MatchValue(value=cond)))
    return api.Filter(must=must)
