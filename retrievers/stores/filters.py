"""Metadata filters for every store: the one filter language of :mod:`rag.core.filters` (its parser,
JSON Schema and docs/filters.md), evaluated here in Python (:func:`predicate`, the exact stores
and the in-memory retrievers) or translated to a Qdrant filter (:func:`translate`, shared by
qdrant-client and qdrant-edge).

Semantics, the same in both (tests/nodes/test_stores_filters.py checks every store against one
hand-written predicate): a list-valued field matches when any element does (``$eq``, ``$in`` and a
range); ``$ne`` / ``$nin`` hold when no element matches, also for a missing field; ranges compare
numbers only (booleans are not numbers); ``true`` equals only ``true``, never ``1``; ``$exists``
means set to something other than null or ``[]``.

>>> matches({"year": 2020, "lang": "en"}, {"year": {"$gte": 2019}, "lang": ["en", "fr"]})
True
>>> matches({"tags": ["a", "b"]}, {"$or": [{"tags": "c"}, {"$not": {"tags": {"$nin": ["a"]}}}]})
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rag.core.filters import RANGE_OPS, parse_filter

Predicate = Callable[[dict[str, Any]], bool]


def validate_filter(flt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The filter parsed into canonical form by :func:`rag.core.filters.parse_filter`, the one copy
    of the rules."""
    return parse_filter(flt)


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)


def _in_range(v: Any, bounds: dict[str, Any]) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return all(
        (op == "$gt" and v > b)
        or (op == "$gte" and v >= b)
        or (op == "$lt" and v < b)
        or (op == "$lte" and v <= b)
        for op, b in bounds.items()
    )


def _field(value: Any, cond: dict[str, Any]) -> bool:
    values = [] if value is None else value if isinstance(value, list) else [value]
    bounds = {op: b for op, b in cond.items() if op in RANGE_OPS}
    if bounds and not any(_in_range(v, bounds) for v in values):
        return False
    for op, arg in cond.items():
        if op == "$eq" and not any(_eq(v, arg) for v in values):
            return False
        if op == "$ne" and any(_eq(v, arg) for v in values):
            return False
        if op == "$in" and not any(_eq(v, a) for v in values for a in arg):
            return False
        if op == "$nin" and any(_eq(v, a) for v in values for a in arg):
            return False
        if op == "$exists" and bool(values) != arg:
            return False
    return True


def _holds(meta: dict[str, Any], flt: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            ok = all(_holds(meta, p) for p in cond)
        elif key == "$or":
            ok = any(_holds(meta, p) for p in cond)
        elif key == "$not":
            ok = not _holds(meta, cond)
        else:
            ok = _field(meta.get(key), cond)
        if not ok:
            return False
    return True


def predicate(flt: dict[str, Any] | None) -> Predicate:
    """``flt`` parsed once, as a function of a document's metadata (``True``: it matches)."""
    canon = parse_filter(flt)
    if not canon:
        return lambda meta: True
    return lambda meta: _holds(meta, canon)


def matches(metadata: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    """True when ``metadata`` satisfies ``flt`` (for many documents use :func:`predicate`)."""
    return predicate(flt)(metadata)


def to_qdrant(flt: dict[str, Any] | None, prefix: str = "metadata.") -> Any:
    """Translate to a ``qdrant_client.models.Filter`` over payload keys ``metadata.<field>``."""
    if not flt:
        return None
    from qdrant_client import models

    return translate(flt, prefix, models, models.Range)


def translate(flt: dict[str, Any], prefix: str, api: Any, range_cls: Any) -> Any:
    """``flt`` as a Qdrant ``Filter`` built from ``api``'s classes (qdrant-client's ``models``
    or ``qdrant_edge``, which share the names but for the range and is-empty classes).

    Qdrant matches keywords, integers and booleans by value; a float equality becomes the range
    ``[v, v]``, and a list mixing kinds (or holding booleans or floats, which ``MatchAny`` cannot
    carry) becomes a nested ``should`` of single-value conditions. ``$ne``/``$nin``/``$not`` are
    ``must_not``, ``$or`` a ``should``, ``$exists`` Qdrant's is-empty condition (missing, null or
    ``[]``), negated for ``true``.
    """
    return _Translator(prefix, api, range_cls).filter(parse_filter(flt) or {})


class _Translator:
    def __init__(self, prefix: str, api: Any, range_cls: Any) -> None:
        self.prefix, self.api, self.range_cls = prefix, api, range_cls
        self.edge = api.__name__ == "qdrant_edge"

    def filter(self, flt: dict[str, Any]) -> Any:
        api = self.api
        must: list[Any] = []
        for key, cond in flt.items():
            if key == "$and":
                must.extend(self.filter(p) for p in cond)
            elif key == "$or":
                must.append(api.Filter(should=[self.filter(p) for p in cond]))
            elif key == "$not":
                must.append(api.Filter(must_not=[self.filter(cond)]))
            else:
                must.extend(self.field(self.prefix + key, cond))
        return api.Filter(must=must)

    def field(self, field: str, cond: dict[str, Any]) -> list[Any]:
        api = self.api
        out: list[Any] = []
        bounds = {op[1:]: b for op, b in cond.items() if op in RANGE_OPS}
        if bounds:
            out.append(api.FieldCondition(key=field, range=self.range_cls(**bounds)))
        for op, arg in cond.items():
            if op == "$eq":
                out.append(self.equals(field, arg))
            elif op == "$ne":
                out.append(api.Filter(must_not=[self.equals(field, arg)]))
            elif op == "$in":
                out.append(self.any_of(field, arg))
            elif op == "$nin":
                out.append(api.Filter(must_not=[self.any_of(field, arg)]))
            elif op == "$exists":
                empty = self.is_empty(field)
                out.append(api.Filter(must_not=[empty]) if arg else empty)
        return out

    def is_empty(self, field: str) -> Any:
        if self.edge:
            return self.api.IsEmptyCondition(key=field)
        return self.api.IsEmptyCondition(is_empty=self.api.PayloadField(key=field))

    def any_of(self, field: str, values: list[Any]) -> Any:
        api = self.api
        if all(isinstance(v, str) for v in values) or all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            return api.FieldCondition(key=field, match=api.MatchAny(any=values))
        return api.Filter(should=[self.equals(field, v) for v in values])

    def equals(self, field: str, value: Any) -> Any:
        api = self.api
        if isinstance(value, float):
            return api.FieldCondition(key=field, range=self.range_cls(gte=value, lte=value))
        if isinstance(value, bool) and self.edge:
            # numpy's bool: qdrant-edge-py 0.9 reads a Python bool as the integer 1/0 (issue #17)
            import numpy as np

            value = np.bool_(value)
        return api.FieldCondition(key=field, match=api.MatchValue(value=value))
