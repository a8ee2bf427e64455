"""What every adapter needs: run a ragnodes retriever or pipeline, and turn metadata around."""

from __future__ import annotations

import hashlib
from typing import Any

from rag.core.errors import ConfigError
from rag.core.nodes import check_k
from rag.core.types import Document, Hit, Query, Ranking

# metadata keys the adapters write next to a document's own metadata
ID_KEY, TITLE_KEY, SCORE_KEY = "id", "title", "score"


def check_searchable(node: Any) -> Any:
    """A ragnodes retriever (``retrieve``) or pipeline (``search``); anything else is an error."""
    if not (callable(getattr(node, "search", None)) or callable(getattr(node, "retrieve", None))):
        raise ConfigError(
            f"expected a ragnodes retriever or Pipeline, got {type(node).__name__}; "
            "wrap an index with rag.pipeline.Pipeline(retriever=...) or Pipeline.open(path)"
        )
    return node


def search(node: Any, query: Query | str, k: int, filter: dict | None = None) -> Ranking:
    """``node.search(query, k, filter)`` for a pipeline (the filter is applied by its retriever,
    before rerankers and compressors), ``node.retrieve(query, k, filter)`` for a retriever."""
    check_k(k)
    if not callable(getattr(node, "search", None)):
        return node.retrieve(query, k=k, filter=filter)
    if filter is None:
        return node.search(query, k=k)
    return node.search(query, k=k, filter=filter)


async def asearch(node: Any, query: Query | str, k: int, filter: dict | None = None) -> Ranking:
    """:func:`search` off the event loop: a pipeline's :meth:`~rag.pipeline.Pipeline.asearch`
    (the bounded worker pool), else a thread. Both carry the caller's context in, so the
    caller's OpenTelemetry span is the parent of ragnodes' stage spans."""
    if callable(getattr(node, "asearch", None)):
        check_k(k)
        return await node.asearch(query, k=k, filter=filter)
    import asyncio

    return await asyncio.to_thread(search, node, query, k, filter)


def fetch(node: Any, doc_id: str) -> Document:
    """The document with id ``doc_id`` from a retriever or pipeline (a file indexed as chunks is
    reassembled from them, :func:`rag.pipeline.parents.lookup`); a clear error if none."""
    from rag.pipeline.parents import lookup

    retriever = getattr(node, "retriever", node)
    doc = lookup(getattr(retriever, "documents", {}), str(doc_id))
    if doc is None:
        raise ConfigError(f"no document has id {doc_id!r}; use an id that search returned")
    return doc


def find_encoder(node: Any) -> Any:
    """The single-vector text encoder behind a pipeline or retriever (a dense retriever's, or a
    hybrid's dense part), else ``None``."""
    from rag.core.encoders import TransformerEncoder

    stack, seen = [node], set()
    while stack:
        n = stack.pop(0)
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, TransformerEncoder):
            return n
        for attr in ("encoder", "retriever", "dense"):
            if (child := getattr(n, attr, None)) is not None:
                stack.append(child)
        stack.extend(getattr(n, "retrievers", None) or ())
    return None


def check_postprocessor(node: Any) -> Any:
    if not (callable(getattr(node, "rerank", None)) or callable(getattr(node, "compress", None))):
        raise ConfigError(
            f"expected a ragnodes reranker (rerank) or compressor (compress), "
            f"got {type(node).__name__}"
        )
    return node


def postprocess(node: Any, ranking: Ranking, top_n: int | None) -> Ranking:
    """Rerank (keeping ``top_n``) or compress a ranking, whichever the node does."""
    if top_n is not None:
        check_k(top_n)
    if callable(getattr(node, "rerank", None)):
        return node.rerank(ranking, k=top_n)
    out = node.compress(ranking)
    return out.top(top_n) if top_n is not None else out


def ranking_in_order(query: str, docs_scores: list[tuple[Document, float]]) -> Ranking:
    """A ranking that keeps the caller's order (a framework's list is not always score-sorted);
    a repeated id keeps its first occurrence."""
    seen: set[str] = set()
    hits = []
    for d, s in docs_scores:
        if d.id not in seen:
            seen.add(d.id)
            hits.append(Hit(document=d, score=float(s)))
    return Ranking(query=Query(text=query), hits=tuple(hits), stage="external")


def content_id(text: str, metadata: dict[str, Any]) -> str:
    """A stable id for a document that arrives without one (same content -> same id)."""
    h = hashlib.sha1(text.encode("utf-8"))
    h.update(repr(sorted(metadata.items(), key=lambda kv: kv[0])).encode("utf-8"))
    return h.hexdigest()[:16]


# the citation fields (rag.pipeline.citations.locate) written next to a chunk's own metadata
CITE_KEYS = ("path", "span", "heading")


def split_metadata(metadata: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(title, the rest) from adapter metadata; the id, score and citation keys we wrote are
    dropped."""
    meta = dict(metadata)
    title = meta.pop(TITLE_KEY, "") or ""
    meta.pop(SCORE_KEY, None)
    meta.pop(ID_KEY, None)
    if "source" in meta:  # an ingested chunk: path/span/heading are derived from it
        for key in CITE_KEYS:
            meta.pop(key, None)
    return str(title), meta


def out_metadata(doc: Document, score: float | None = None) -> dict[str, Any]:
    """A document's metadata plus its id, title and (when known) score, for a framework object;
    a chunk of an ingested file also gets the citation fields ``path``, ``span`` (a list),
    ``page`` and ``heading``, as :func:`rag.pipeline.citations.locate` gives them to every door."""
    from rag.pipeline.citations import locate

    meta: dict[str, Any] = {**doc.metadata, ID_KEY: doc.id}
    where = locate(doc)
    if where["path"]:
        meta.update({k: list(v) if k == "span" else v for k, v in where.items()})
    if doc.title:
        meta[TITLE_KEY] = doc.title
    if score is not None:
        meta[SCORE_KEY] = score
    return meta
