"""One metadata filter suite for every store: strings, integers, floats, booleans, ranges, lists
(of values and as payload), each checked against a hand-written predicate."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

N = 40
LANGS = ("en", "de", "fr")


def meta(i: int) -> dict:
    m = {
        "lang": LANGS[i % 3],
        "n": i,
        "score": i / 10,
        "even": i % 2 == 0,
        "tags": ["a", "b"] if i % 4 == 0 else ["c"],
    }
    if i % 5 == 0:
        m["opt"] = i % 2  # set on some documents only ($exists)
    return m


CASES = [
    ({"lang": "en"}, lambda m: m["lang"] == "en"),
    ({"n": 7}, lambda m: m["n"] == 7),
    ({"score": 0.5}, lambda m: m["score"] == 0.5),
    ({"even": True}, lambda m: m["even"]),
    ({"even": False}, lambda m: not m["even"]),
    ({"n": {"gte": 10, "lt": 20}}, lambda m: 10 <= m["n"] < 20),
    ({"score": {"gt": 1.5, "lte": 3.0}}, lambda m: 1.5 < m["score"] <= 3.0),
    ({"lang": ["en", "fr"]}, lambda m: m["lang"] in ("en", "fr")),
    ({"n": [1, 2, 39]}, lambda m: m["n"] in (1, 2, 39)),
    ({"n": [3, 2.5]}, lambda m: m["n"] == 3),
    ({"even": [True]}, lambda m: m["even"]),
    ({"tags": "a"}, lambda m: "a" in m["tags"]),
    ({"tags": ["b", "c"]}, lambda m: bool({"b", "c"} & set(m["tags"]))),
    (
        {"even": True, "lang": "de", "n": {"lt": 30}},
        lambda m: m["even"] and m["lang"] == "de" and m["n"] < 30,
    ),
    # the operators of the one filter language (rag.core.filters, docs/filters.md)
    ({"lang": {"$eq": "en"}}, lambda m: m["lang"] == "en"),
    ({"lang": {"$ne": "en"}}, lambda m: m["lang"] != "en"),
    ({"lang": {"$in": ["en", "fr"]}}, lambda m: m["lang"] in ("en", "fr")),
    ({"lang": {"$nin": ["en", "fr"]}}, lambda m: m["lang"] not in ("en", "fr")),
    ({"n": {"$nin": [1, 2.5, 3]}}, lambda m: m["n"] not in (1, 3)),
    ({"tags": {"$nin": ["a"]}}, lambda m: "a" not in m["tags"]),
    ({"tags": {"$ne": "c"}}, lambda m: "c" not in m["tags"]),
    ({"n": {"$gte": 10, "$lt": 20}}, lambda m: 10 <= m["n"] < 20),
    ({"score": {"$gt": 3.5}}, lambda m: m["score"] > 3.5),
    ({"even": {"$eq": False}}, lambda m: not m["even"]),
    ({"opt": {"$exists": True}}, lambda m: m.get("opt") is not None),
    ({"opt": {"$exists": False}}, lambda m: m.get("opt") is None),
    ({"opt": {"$ne": 1}}, lambda m: m.get("opt") != 1),
    (
        {"$or": [{"lang": "en"}, {"n": {"$lt": 5}}]},
        lambda m: m["lang"] == "en" or m["n"] < 5,
    ),
    (
        {"$and": [{"lang": {"$ne": "de"}}, {"$or": [{"even": True}, {"tags": "a"}]}]},
        lambda m: m["lang"] != "de" and (m["even"] or "a" in m["tags"]),
    ),
    ({"$not": {"lang": "en", "even": True}}, lambda m: not (m["lang"] == "en" and m["even"])),
    (
        {"$not": {"$or": [{"n": {"$gte": 30}}, {"lang": {"$in": ["fr"]}}]}, "even": False},
        lambda m: not (m["n"] >= 30 or m["lang"] == "fr") and not m["even"],
    ),
]


def _exact():
    from retrievers.stores import ExactStore

    return ExactStore()


def _qdrant():
    from retrievers.stores import QdrantStore

    return QdrantStore(collection="filters")


def _edge():
    from retrievers.stores import QdrantEdgeStore

    return QdrantEdgeStore()


STORES = {"exact": _exact, "qdrant": _qdrant}
if importlib.util.find_spec("qdrant_edge") is not None:
    STORES["qdrant-edge"] = _edge


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(N, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("store", sorted(STORES))
def test_store_filters(store, vectors):
    from rag.core.errors import ConfigError

    s = STORES[store]()
    ids = [f"d{i}" for i in range(N)]
    s.add(ids, vectors, [{"metadata": meta(i)} for i in range(N)])
    for flt, pred in CASES:
        want = {f"d{i}" for i in range(N) if pred(meta(i))}
        got = {i for i, _ in s.search(vectors[:1], N, flt)[0]}
        assert got == want, (store, flt)
    for bad in ({"lang": {"$regex": "e."}}, {"$nor": [{"n": 1}]}, {"n": {"$gt": "5"}}):
        with pytest.raises(ConfigError, match=r"unknown|takes a number"):  # never ignored
            s.search(vectors[:1], N, bad)


def test_hybrid_filters(vectors, minilm):
    pytest.importorskip("qdrant_client")
    from retrievers import QdrantHybridRetriever

    r = QdrantHybridRetriever(
        collection="filters", encoder=minilm, filter_fields={"lang": "keyword", "n": "integer"}
    )
    docs = [{"id": f"d{i}", "text": f"note {i} on planets", "metadata": meta(i)} for i in range(N)]
    r.index_vectors(docs, vectors)
    for flt, pred in CASES:
        want = {f"d{i}" for i in range(N) if pred(meta(i))}
        got = set(r.retrieve("planets", k=N, filter=flt).ids)
        assert got == want, flt
        assert {i for i, _ in r.bm25_search(["planets"], k=N, filter=flt)[0]} == want, flt


def test_the_schema_and_the_parser_agree():
    """Every case above is valid under FILTER_SCHEMA (the `rag config schema filter` output),
    and the parser's errors are single lines."""
    jsonschema = pytest.importorskip("jsonschema")
    from rag.core.errors import ConfigError
    from rag.core.filters import FILTER_SCHEMA, parse_filter

    for flt, _ in CASES:
        jsonschema.validate(flt, FILTER_SCHEMA)
        assert parse_filter(parse_filter(flt)) == parse_filter(flt)  # canonical is a fixpoint
    for bad in ({"n": {"$regex": 1}}, {"$or": []}, {"n": []}, {"$not": None}, {"n": None}):
        with pytest.raises(ConfigError) as e:
            parse_filter(bad)
        assert "\n" not in str(e.value)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, FILTER_SCHEMA)


def test_empty_list_is_refused():
    from rag.core.errors import ConfigError
    from retrievers.stores.filters import validate_filter

    with pytest.raises(ConfigError, match="empty list"):
        validate_filter({"lang": []})
