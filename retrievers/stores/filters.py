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

from rag.nodes import check_filter


def validate_filter(flt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The filter checked (and a typed ``rag.api.Filter`` made plain) by
    :func:`rag.nodes.check_filter`, the one copy of these rules."""
    return check_filter(flt)


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
    or ``qdrant_edge``, which share the names but for the range class).

    Qdrant matches keywords, integers and booleans by value; a float equality becomes the range
    ``[v, v]``, and a list mixing kinds (or holding booleans or floats, which ``MatchAny`` cannot
    carry) becomes a nested ``should`` of single-value conditions.
    """
    must = []
    for key, cond in validate_filter(flt).items():  # type: ignore[union-attr]
        field = prefix + key
        if isinstance(cond, dict):
            must.append(api.FieldCondition(key=field, range=range_cls(**cond)))
        elif isinstance(cond, (list, tuple, set)):
            values = list(cond)
            if values and (
                all(isinstance(v, str) for v in values)
                or all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            ):
                must.append(api.FieldCondition(key=field, match=api.MatchAny(any=values)))
            else:
                should = [_equals(api, range_cls, field, v) for v in values]
                must.append(api.Filter(should=should))
        else:
            must.append(_equals(api, range_cls, field, cond))
    return api.Filter(must=must)


def _equals(api: Any, range_cls: Any, field: str, value: Any) -> Any:
    if isinstance(value, float):
        return api.FieldCondition(key=field, range=range_cls(gte=value, lte=value))
    if isinstance(value, bool):
        # numpy's bool: qdrant-edge-py 0.9 reads a Python bool as the integer 1/0 (issue #17)
        import numpy as np

        value = np.bool_(value) if api.__name__ == "qdrant_edge" else value
    return api.FieldCondition(key=field, match=api.MatchValue(value=value))
