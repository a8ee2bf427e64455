"""Hybrid retrieval run inside Qdrant: one collection, one ``query_points`` call per query.

Each document is one point whose payload is the document (``doc_id``, ``title``, ``text``,
``metadata``) and whose named vectors are

* ``dense``: the bi-encoder embedding (DOT on normalised vectors = cosine);
* ``bm25``: BM25 term weights, IDF applied by Qdrant (``Modifier.IDF``, see
  :mod:`retrievers.sparse`);
* ``colbert`` (optional): token vectors, ``MultiVectorComparator.MAX_SIM`` (Khattab & Zaharia,
  "ColBERT", SIGIR 2020), stored without an HNSW graph since it only re-scores;
* ``fde`` (optional): the MUVERA fixed-dimensional encoding of those tokens (Dhulipala et al.,
  NeurIPS 2024), a third first-stage candidate source.

A query is one request: ``prefetch`` dense + sparse (+ FDE), each carrying the filter, fused by
RRF (Cormack et al., SIGIR 2009) or DBSF, then optionally re-scored by MaxSim over the fused
candidates. The serving process keeps no document table: documents come back in the payload, so a
retriever opened on an existing collection (``path=`` or ``url=``, from any process or replica)
searches it at once.

``rrf_k`` follows :func:`retrievers.fusion.rrf` (``1 / (rrf_k + rank)``, ranks from 1); Qdrant
ranks from 0, so the request carries ``Rrf(k=rrf_k + 1)`` and both give the same scores.

>>> r = QdrantHybridRetriever(path="qdrant-data", collection="docs")   # doctest: +SKIP
>>> r.index(docs).retrieve("what is bm25", filter={"year": {"gte": 2020}})  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.encoders import TransformerEncoder
from rag.errors import ConfigError
from rag.nodes import BaseRetriever, candidate_depth, check_k
from rag.types import Document, Query, Ranking, as_documents, unique_ids
from retrievers.qdrant_query import (
    TIE_MARGIN,
    document_points,
    fusion_query,
    payload_document,
    query_requests,
)
from retrievers.qdrant_schema import (
    META_KEY,
    collection_config,
    payload_indexes,
    sparse_vector,
)
from retrievers.sparse import BM25SparseEncoder
from retrievers.stores.filters import to_qdrant, validate_filter
from retrievers.stores.qdrant import (
    check_collection,
    collection_state,
    open_client,
    point_id,
    qdrant_errors,
)

FUSIONS = ("rrf", "dbsf")


class QdrantHybridRetriever(BaseRetriever):
    """Dense + BM25 (+ MUVERA) candidates fused and MaxSim-rescored by Qdrant.

    Args:
        collection: collection name.
        location: ``":memory:"`` (embedded, in-process); ignored with ``path`` or ``url``.
        path: folder of an embedded persistent collection (qdrant-client local mode).
        url: Qdrant server or cluster URL; ``api_key_env`` names the variable holding its key.
        encoder: dense :class:`~rag.encoders.TransformerEncoder` (default packaged MiniLM).
        sparse: :class:`~retrievers.sparse.BM25SparseEncoder` (tokenizer of ``BM25Retriever``).
        token_encoder: a :class:`~retrievers.multivector.TokenEncoder` to store token vectors and
            re-score the fused candidates by MaxSim; ``None``: no multivector.
        fde: a :class:`~retrievers.multivector.MuveraFDE` adding an FDE prefetch (needs
            ``token_encoder``).
        fusion: ``rrf`` or ``dbsf``.
        rrf_k: RRF constant, as :class:`~retrievers.hybrid.HybridRetriever`'s.
        depth: candidates per prefetch (default 100, at least ``k``: the one policy,
            :func:`rag.nodes.candidate_depth`; ``HybridRetriever`` fuses 500 by default, but
            here each prefetch is an HNSW search and ``rescore_depth`` follows ``depth``, so a
            deeper default would cost every query; set ``depth: 500`` for its recall).
        rescore_depth: fused candidates MaxSim re-scores (default ``depth``).
        filter_fields: ``{field: "keyword"|"integer"|"float"|"bool"}`` metadata fields to build
            payload indexes for (a server uses them to filter inside the HNSW search).
        reweight_tolerance: re-weight every document's BM25 vector once the average document
            length used by the stored weights spans more than this fraction (``None``: never;
            call :meth:`reweight`).
        on_disk, quantization, hnsw_m, shard_number, replication_factor,
            write_consistency_factor: server/cluster settings of the collection (docs/scaling.md);
            ``quantization`` needs ``url`` (local mode ignores it).
        fields: ``title+text`` or ``text`` for the dense embedding.
        upsert_batch: points per upsert request.
    """

    name: ClassVar[str] = "qdrant_hybrid"
    requires: ClassVar[tuple[str, ...]] = ("qdrant_client",)

    def __init__(
        self,
        collection: str = "ragnodes_hybrid",
        location: str = ":memory:",
        path: str | None = None,
        url: str | None = None,
        api_key_env: str | None = None,
        encoder: Any = None,
        sparse: Any = None,
        token_encoder: Any = None,
        fde: Any = None,
        fusion: str = "rrf",
        rrf_k: int = 60,
        depth: int | None = None,
        rescore_depth: int | None = None,
        filter_fields: dict[str, str] | None = None,
        reweight_tolerance: float | None = 0.02,
        on_disk: bool = False,
        quantization: str | None = None,
        hnsw_m: int | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        fields: str = "title+text",
        upsert_batch: int = 256,
    ) -> None:
        from retrievers.kernels.quantize import check_kind

        if not collection:
            raise ConfigError("collection must be a non-empty name")
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
            raise ConfigError(f"rrf_k must be an int >= 0, got {rrf_k!r}")
        for v in (depth, rescore_depth):
            if v is not None:
                check_k(v)
        if fde is not None and token_encoder is None:
            raise ConfigError("fde needs token_encoder (the FDE encodes its token vectors)")
        if check_kind(quantization) is not None and not url:
            raise ConfigError(
                "quantization needs a Qdrant server (url=...): qdrant-client's local mode "
                "ignores it"
            )
        if fields not in ("title+text", "text"):
            raise ConfigError(f"fields must be 'title+text' or 'text', got {fields!r}")
        if reweight_tolerance is not None and not reweight_tolerance >= 0:
            raise ConfigError(f"reweight_tolerance must be >= 0 or None, got {reweight_tolerance}")
        if upsert_batch < 1:
            raise ConfigError(f"upsert_batch must be >= 1, got {upsert_batch}")
        payload_indexes(filter_fields)  # validates the declared types
        self.collection = collection
        self.location = location
        self.path = path
        self.url = url
        self.api_key_env = api_key_env
        self.encoder = encoder if encoder is not None else TransformerEncoder()
        self.sparse = sparse if sparse is not None else BM25SparseEncoder()
        if not isinstance(self.sparse, BM25SparseEncoder):
            raise ConfigError(f"sparse must be a BM25SparseEncoder, got {type(sparse).__name__}")
        self.token_encoder = token_encoder
        self.fde = fde
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.depth = depth
        self.rescore_depth = rescore_depth
        self.filter_fields = dict(filter_fields) if filter_fields else None
        self.reweight_tolerance = reweight_tolerance
        self.on_disk = on_disk
        self.quantization = quantization
        self.hnsw_m = hnsw_m
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self.write_consistency_factor = write_consistency_factor
        self.fields = fields
        self.upsert_batch = upsert_batch
        self._client: Any = None

    # -- connection -----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = open_client(self.url, self.path, self.location, self.api_key_env)
        return self._client

    def close(self) -> None:
        """Release the client (and a local folder's lock)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _load(self) -> None:
        self.encoder.load()
        self.sparse.load()
        if self.token_encoder is not None:
            self.token_encoder.load()

    def _exists(self) -> bool:
        return bool(self.client.collection_exists(self.collection))

    def _meta(self) -> dict[str, Any]:
        meta = self.client.get_collection(self.collection).config.metadata or {}
        stats = dict(meta.get(META_KEY) or {})
        if stats and stats.get("bm25") != self.sparse.stats_key():
            raise ConfigError(
                f"collection {self.collection!r} was indexed with BM25 settings "
                f"{stats.get('bm25')}, this retriever has {self.sparse.stats_key()}"
            )
        return stats

    def _set_meta(self, stats: dict[str, Any]) -> None:
        self.client.update_collection(self.collection, metadata={META_KEY: stats})

    # -- the document store: the payload ---------------------------------------------------------
    @property
    def documents(self) -> dict[str, Document]:
        """Always empty: documents live in the collection's payload (:meth:`get_documents`)."""
        return {}

    def __len__(self) -> int:
        with qdrant_errors(self.url):
            if not self._exists():
                return 0
            return int(self.client.count(self.collection, exact=True).count)

    def get_documents(self, ids: Sequence[str]) -> list[Document]:
        """The stored documents with these ids, in the given order (missing ids are skipped)."""
        with qdrant_errors(self.url):
            if not ids or not self._exists():
                return []
            pts = self.client.retrieve(self.collection, [point_id(i) for i in ids])
        by_id = {p.payload["doc_id"]: payload_document(p.payload) for p in pts}
        return [by_id[i] for i in ids if i in by_id]

    def _lengths(self, ids: Sequence[str]) -> dict[str, int]:
        """Stored BM25 lengths of the documents among ``ids`` that the collection holds."""
        pts = self.client.retrieve(
            self.collection, [point_id(i) for i in ids], with_payload=["doc_id", "bm25_len"]
        )
        return {p.payload["doc_id"]: int(p.payload["bm25_len"]) for p in pts}

    # -- indexing -------------------------------------------------------------------------------
    def _text(self, d: Document) -> str:
        return d.full_text if self.fields == "title+text" else d.text

    def index(self, documents: Sequence[Document | dict[str, Any]]) -> QdrantHybridRetriever:
        """Add or replace documents (encodes them; see :meth:`index_vectors`)."""
        docs = as_documents(documents)
        unique_ids(docs)
        if not docs:
            return self
        self.load()
        dense = self.encoder.encode([self._text(d) for d in docs], kind="document")
        tokens = None
        if self.token_encoder is not None:
            tokens = self.token_encoder.encode_documents([d.full_text for d in docs])
        return self.index_vectors(docs, dense, tokens)

    def index_vectors(
        self,
        documents: Sequence[Document | dict[str, Any]],
        dense: np.ndarray,
        tokens: Sequence[np.ndarray] | None = None,
    ) -> QdrantHybridRetriever:
        """Add or replace documents with precomputed dense vectors ``(N, D)`` (and token matrices
        ``(L_i, H)`` when a ``token_encoder`` is set). BM25 weights use the average length of the
        collection after this batch."""
        docs = as_documents(documents)
        unique_ids(docs)
        dense = np.asarray(dense, dtype=np.float32)
        if dense.ndim != 2 or len(dense) != len(docs):
            raise ConfigError(f"need an (N, D) matrix for {len(docs)} documents, got {dense.shape}")
        if (tokens is None) != (self.token_encoder is None) or (
            tokens is not None and len(tokens) != len(docs)
        ):
            raise ConfigError(
                "pass one token matrix per document exactly when token_encoder is set"
            )
        if not docs:
            return self
        self.sparse.load()
        toks = self.sparse.tokens(docs)
        with qdrant_errors(self.url):
            self._ensure(dense.shape[1], tokens)
            stats = self._meta()
            old = self._lengths([d.id for d in docs])
            n = stats.get("docs", 0) - len(old) + len(docs)
            total = stats.get("tokens", 0) - sum(old.values()) + sum(len(t) for t in toks)
            avgdl = total / n if n else 0.0
            stats.update(docs=n, tokens=total, bm25=self.sparse.stats_key())
            stats["avgdl_lo"] = min(stats.get("avgdl_lo", avgdl), avgdl)
            stats["avgdl_hi"] = max(stats.get("avgdl_hi", avgdl), avgdl)
            self._upsert(docs, dense, self.sparse.document_vectors(toks, avgdl), toks, tokens)
            self._set_meta(stats)
            self._maybe_reweight(stats)
        return self

    def _ensure(self, dim: int, tokens: Sequence[np.ndarray] | None) -> None:
        if self._exists():
            return
        tok_dim = fde_dim = None
        if tokens is not None:
            tok_dim = int(np.asarray(tokens[0]).shape[1])
            fde_dim = self.fde.output_dim(tok_dim) if self.fde is not None else None
        self.client.create_collection(
            self.collection, **collection_config(self, dim, tok_dim, fde_dim)
        )
        for field, schema in payload_indexes(self.filter_fields).items():
            with warnings.catch_warnings():  # local mode filters without indexes, and says so
                warnings.simplefilter("ignore", UserWarning)
                self.client.create_payload_index(
                    self.collection, field_name=field, field_schema=schema
                )

    def _upsert(
        self,
        docs: list[Document],
        dense: np.ndarray,
        sparse: list[tuple[np.ndarray, np.ndarray]],
        toks: list[list[str]],
        tokens: Sequence[np.ndarray] | None,
    ) -> None:
        fdes = None
        if tokens is not None and self.fde is not None:
            fdes = self.fde.encode_documents([np.asarray(t, np.float32) for t in tokens])
        for s in range(0, len(docs), self.upsert_batch):
            e = min(s + self.upsert_batch, len(docs))
            points = document_points(
                docs[s:e],
                dense[s:e],
                sparse[s:e],
                [len(t) for t in toks[s:e]],
                None if tokens is None else tokens[s:e],
                None if fdes is None else fdes[s:e],
            )
            self.client.upsert(self.collection, points=points, wait=True)

    def _maybe_reweight(self, stats: dict[str, Any]) -> None:
        tol = self.reweight_tolerance
        avgdl = stats["tokens"] / stats["docs"] if stats["docs"] else 0.0
        if tol is not None and avgdl and (stats["avgdl_hi"] - stats["avgdl_lo"]) > tol * avgdl:
            self.reweight()

    def reweight(self) -> int:
        """Recompute every document's BM25 vector with the collection's current average length
        (after many additions or deletions); returns the number of points re-weighted."""
        from qdrant_client import models

        self.sparse.load()
        with qdrant_errors(self.url):
            if not self._exists():
                return 0
            stats = self._meta()
            avgdl = stats["tokens"] / stats["docs"] if stats.get("docs") else 0.0
            done, offset = 0, None
            while True:
                pts, offset = self.client.scroll(
                    self.collection, limit=self.upsert_batch, offset=offset, with_payload=True
                )
                docs = [payload_document(p.payload) for p in pts]
                vecs = self.sparse.document_vectors(self.sparse.tokens(docs), avgdl)
                self.client.update_vectors(
                    self.collection,
                    points=[
                        models.PointVectors(id=p.id, vector={"bm25": sparse_vector(*v)})
                        for p, v in zip(pts, vecs)
                    ],
                    wait=True,
                )
                done += len(pts)
                if offset is None:
                    break
            stats["avgdl_lo"] = stats["avgdl_hi"] = avgdl
            self._set_meta(stats)
        return done

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; returns how many the collection held."""
        from qdrant_client import models

        with qdrant_errors(self.url):
            if not ids or not self._exists():
                return 0
            old = self._lengths(list(ids))
            if not old:
                return 0
            self.client.delete(
                self.collection,
                points_selector=models.PointIdsList(points=[point_id(i) for i in old]),
                wait=True,
            )
            stats = self._meta()
            stats["docs"] = stats.get("docs", 0) - len(old)
            stats["tokens"] = stats.get("tokens", 0) - sum(old.values())
            if stats["docs"]:
                avgdl = stats["tokens"] / stats["docs"]
                stats["avgdl_lo"] = min(stats["avgdl_lo"], avgdl)
                stats["avgdl_hi"] = max(stats["avgdl_hi"], avgdl)
            self._set_meta(stats)
            self._maybe_reweight(stats)
        return len(old)

    # -- search ---------------------------------------------------------------------------------
    def _retrieve(
        self, qs: list[Query], k: int, filter: dict[str, Any] | None
    ) -> list[Ranking]:
        """The checked request (``retrieve_batch`` checked it) as one Qdrant batch; documents
        come from the payload, not from a document table."""
        if not qs:
            return []
        with qdrant_errors(self.url):
            if not self._exists():
                return [Ranking(query=q, stage=self.name) for q in qs]
            self.load()
            reqs = self.requests([q.text for q in qs], k, filter)
            res = self.client.query_batch_points(self.collection, requests=reqs)
        return [
            Ranking.from_scored(
                q, ((payload_document(p.payload), p.score) for p in r.points), k, self.name
            )
            for q, r in zip(qs, res)
        ]

    def requests(self, texts: list[str], k: int, filter: dict | None = None) -> list[Any]:
        """The ``QueryRequest`` of each query text: what a server or cluster receives."""
        depth = candidate_depth(k, self.depth)
        dense = self.encoder.encode(texts, kind="query")
        qtok = fde = None
        if self.token_encoder is not None:
            qtok = self.token_encoder.encode_queries(texts)
            if self.fde is not None:
                fde = self.fde.encode_queries([np.asarray(t, np.float32) for t in qtok])
        sparse = [self.sparse.query_vector(t) for t in texts]
        fused = fusion_query(self.fusion, self.rrf_k)
        return query_requests(
            dense, sparse, fused, k, depth, to_qdrant(filter), qtok, fde, self.rescore_depth
        )

    def bm25_search(
        self, texts: Sequence[str], k: int = 10, filter: dict | None = None
    ) -> list[list[tuple[str, float]]]:
        """BM25 alone: the sparse vector searched by Qdrant, ``(doc_id, score)`` best first (only
        documents sharing a term with the query, unlike bm25s, which scores every document)."""
        check_k(k)
        validate_filter(filter)
        out: list[list[tuple[str, float]]] = []
        with qdrant_errors(self.url):
            if not self._exists():
                return [[] for _ in texts]
            for text in texts:
                idx, val = self.sparse.query_vector(text)
                if not len(idx):
                    out.append([])
                    continue
                pts = self.client.query_points(
                    self.collection,
                    query=sparse_vector(idx, val),
                    using="bm25",
                    limit=k + TIE_MARGIN,
                    query_filter=to_qdrant(filter),
                    with_payload=["doc_id"],
                ).points
                hits = sorted(
                    ((p.payload["doc_id"], float(p.score)) for p in pts),
                    key=lambda h: (-h[1], h[0]),
                )
                out.append(hits[:k])
        return out

    # -- persistence ----------------------------------------------------------------------------
    def _commit_state(self, commit: Any, part: str) -> dict[str, Any]:
        """The default snapshot plus what the collection holds (checked on open)."""
        state = super()._commit_state(commit, part)
        if self.path or not self.url:
            with qdrant_errors(self.url):
                state["collection"] = collection_state(self.client, self.collection, self.path)
        return state

    def _open_state(self, folder: Path, state: dict[str, Any]) -> None:
        if "collection" in state and self.path:  # before qdrant-client reads the files
            check_collection(state["collection"], folder, lambda: self.client)
        super()._open_state(folder, state)
        if "collection" in state and not self.path:  # a copy inside the index folder
            check_collection(state["collection"], folder, lambda: self.client)

    def _save_state(self, path: Path) -> None:
        """A ``path``/``url`` collection persists by itself (only the config is saved); an
        in-memory one is copied to ``path/qdrant``."""
        if self.url or self.path:
            return
        from retrievers.qdrant_schema import copy_collection

        copy_collection(self.client, self.collection, str(Path(path) / "qdrant"))

    def _load_state(self, path: Path) -> None:
        if self.url or self.path:
            return
        self.close()
        self._client = open_client(None, str(Path(path) / "qdrant"))
