"""Qdrant as a vector store through qdrant-client.

``location=":memory:"`` (default) and ``path=`` run qdrant-client's embedded local mode (exact
search, no server); ``url=`` talks to a Qdrant server or cluster with the same code. The API key is
read from the environment variable named by ``api_key_env`` and never written into configs.
Document ids map to deterministic UUIDv5 point ids; the original id is kept in the payload.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError, IndexLockedError, RagError
from rag.core.extras import require
from rag.core.nodes import Node
from retrievers.stores.base import check_batch
from retrievers.stores.filters import to_qdrant, validate_filter

_NS = uuid.UUID("6f1d8a52-3b1c-4c57-9a0e-7d1f1f7f2a10")
DISTANCES = ("dot", "cosine", "euclid")


def point_id(doc_id: str) -> str:
    return str(uuid.uuid5(_NS, doc_id))


class QdrantUnavailableError(RagError, ConnectionError):
    """The Qdrant server at ``url`` cannot be reached."""


class QdrantLockedError(IndexLockedError):
    """A local-mode folder (``path=``) is open in another client or process."""


def open_client(
    url: str | None, path: str | None, location: str = ":memory:", api_key_env: str | None = None
) -> Any:
    """A ``QdrantClient`` for ``url`` (server), ``path`` (embedded, persistent) or ``location``;
    a folder held by another client raises :class:`QdrantLockedError` in one line."""
    qc = require("qdrant_client", feature="Qdrant stores")
    if url:
        key = os.environ.get(api_key_env) if api_key_env else None
        return qc.QdrantClient(url=url, api_key=key)
    if not path:
        return qc.QdrantClient(location=location)
    try:
        return qc.QdrantClient(path=path)
    except RuntimeError as e:
        if "already accessed" not in str(e):
            raise
        raise QdrantLockedError(
            f"Qdrant folder {path!r} is open in another client or process (qdrant-client's local "
            "mode allows one at a time); close it there, or serve it with a Qdrant server (url=)"
        ) from None


def _local_files(path: str, collection: str) -> list[Path]:
    return [Path(path) / "meta.json", Path(path) / "collection" / collection / "storage.sqlite"]


def _vectors(client: Any, collection: str) -> dict[str, Any]:
    """``{name: {"size", "distance"}}`` of a collection's dense vectors (``""``: unnamed)."""
    params = client.get_collection(collection).config.params.vectors
    items = params.items() if isinstance(params, dict) else [("", params)]
    return {n: {"size": int(v.size), "distance": str(v.distance.value if hasattr(
        v.distance, "value") else v.distance)} for n, v in items}


def collection_state(client: Any, collection: str, path: str | None) -> dict[str, Any]:
    """What an index commit records of a Qdrant collection (:mod:`rag.index`): its vector
    config and point count, and for local mode (``path``) the size and sha256 of its files, so
    that opening finds a local folder changed or damaged since (qdrant-client's local mode keeps
    points in ``storage.sqlite``, committed by each upsert)."""
    from rag.index.files import file_digest

    exists = bool(client.collection_exists(collection))
    state: dict[str, Any] = {
        "collection": collection,
        "points": int(client.count(collection, exact=True).count) if exists else 0,
        "vectors": _vectors(client, collection) if exists else {},
    }
    if path:
        state["path"] = str(path)
        state["files"] = {
            str(f.relative_to(path)): {"bytes": f.stat().st_size, "sha256": file_digest(f)}
            for f in _local_files(path, collection) if f.exists()
        }
    return state


def check_collection(state: dict[str, Any], index: Path, connect: Any) -> None:
    """Check a Qdrant collection against what the index's manifest recorded (see
    :func:`collection_state`): local files first (before qdrant-client reads them: a damaged
    ``meta.json`` or ``storage.sqlite`` would be a traceback, a missing one an empty collection),
    then the collection's vector config and point count. A mismatch is one
    :class:`~rag.core.errors.IndexCorruptError` naming the folder and the repair."""
    from rag.core.errors import IndexCorruptError
    from rag.index.files import file_digest

    path, name = state.get("path"), state["collection"]
    where = f"Qdrant folder {path!r}" if path else f"Qdrant collection {name!r}"
    fix = (f"delete {path} and run `rag index --repair {index}`" if path
           else f"run `rag index --repair {index}` or re-ingest the corpus")

    def bad(what: str) -> IndexCorruptError:
        return IndexCorruptError(f"index {str(index)!r}: {what}; {fix}")

    for rel, entry in (state.get("files") or {}).items():
        f = Path(str(path)) / rel
        if not f.exists():
            raise bad(f"{where}: file {rel} is missing")
        size = f.stat().st_size
        if size != entry["bytes"]:
            kind = "emptied" if size == 0 else "truncated" if size < entry["bytes"] else "longer"
            raise bad(f"{where}: file {rel} is {kind} ({size} bytes, the manifest says "
                      f"{entry['bytes']})")
        if file_digest(f) != entry["sha256"]:
            raise bad(f"{where}: file {rel} does not match its checksum (changed after the "
                      "index was committed)")
    import pickle
    import sqlite3

    try:
        client = connect()
        exists = bool(client.collection_exists(name))
        points = int(client.count(name, exact=True).count) if exists else 0
        vectors = _vectors(client, name) if exists else {}
    except (sqlite3.DatabaseError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as e:
        raise bad(f"{where} cannot be read ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:100] if str(e) else 'no detail'})") from None
    if not exists and state["points"]:
        raise bad(f"{where} has no collection {name!r} (the manifest says {state['points']} "
                  "points)")
    if points != state["points"]:
        raise bad(f"{where}: collection {name!r} holds {points} points, the manifest says "
                  f"{state['points']}")
    if vectors != state["vectors"]:
        raise bad(f"{where}: collection {name!r} has vectors {vectors}, the manifest says "
                  f"{state['vectors']}")


@contextlib.contextmanager
def qdrant_errors(url: str | None) -> Iterator[None]:
    """Turn an unreachable server into one :class:`QdrantUnavailableError` line."""
    try:
        yield
    except Exception as e:
        from qdrant_client.http.exceptions import ResponseHandlingException

        if url and isinstance(e, (ResponseHandlingException, ConnectionError, OSError)):
            raise QdrantUnavailableError(
                f"cannot reach the Qdrant server at {url!r} ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120] if str(e) else 'no detail'}); start it or fix url="
            ) from None
        raise


class QdrantStore(Node):
    """A Qdrant collection of single vectors.

    Args:
        collection: collection name.
        location: ``":memory:"`` for embedded in-memory mode (ignored when ``path`` or ``url``).
        path: folder for embedded persistent mode.
        url: server URL (``http://host:6333``) for a server or cluster.
        api_key_env: environment variable holding the server API key.
        distance: ``dot`` (default; vectors are normalised upstream), ``cosine`` or ``euclid``.
        on_disk: keep vectors on disk (server mode).
        quantization: ``None``, ``"binary"``, ``"2bit"`` or ``"int8"``, mapped to the server's
            binary (one/two bits) or scalar quantization, kept in RAM while originals may sit
            on disk. Server mode only: qdrant-client's local mode would ignore it silently, so
            it is refused there (use :class:`~retrievers.stores.qdrant_edge.QdrantEdgeStore`).
        rescore: re-score the quantized shortlist with the original vectors.
        oversampling: shortlist size as a multiple of ``k`` when rescoring.
        hnsw_m: HNSW edges per node (``None``: the server's default, 16).
        hnsw_ef_construct: HNSW build beam width.
        hnsw_ef: HNSW search beam width (``None``: the server's default).
        shard_number / replication_factor / write_consistency_factor: how a cluster splits and
            copies the collection and how many replicas acknowledge a write (server mode;
            ``None``: the server's defaults). See docs/scaling.md.
    """

    name: ClassVar[str] = "qdrant_store"
    kind: ClassVar[str] = "store"
    requires: ClassVar[tuple[str, ...]] = ("qdrant_client",)
    upsert_batch: ClassVar[int] = 512

    def __init__(
        self,
        collection: str = "ragnodes",
        location: str = ":memory:",
        path: str | None = None,
        url: str | None = None,
        api_key_env: str | None = None,
        distance: str = "dot",
        on_disk: bool = False,
        quantization: str | None = None,
        rescore: bool = True,
        oversampling: float = 4.0,
        hnsw_m: int | None = None,
        hnsw_ef_construct: int = 100,
        hnsw_ef: int | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
    ) -> None:
        from retrievers.kernels.quantize import check_kind

        if distance not in DISTANCES:
            raise ConfigError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if check_kind(quantization) is not None and not url:
            raise ConfigError(
                "quantization needs a Qdrant server (url=...): qdrant-client's local mode "
                "ignores it; use QdrantEdgeStore (qdrant-edge-py) to run Qdrant's quantization "
                "in-process"
            )
        if not oversampling >= 1:
            raise ConfigError(f"oversampling must be >= 1, got {oversampling!r}")
        self.collection = collection
        self.location = location
        self.path = path
        self.url = url
        self.api_key_env = api_key_env
        self.distance = distance
        self.on_disk = on_disk
        self.quantization = quantization
        self.rescore = rescore
        self.oversampling = oversampling
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construct = hnsw_ef_construct
        self.hnsw_ef = hnsw_ef
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self.write_consistency_factor = write_consistency_factor
        self._client: Any = None

    def _connect(self, path: str | None = None) -> Any:
        if self.url and path is None:
            return open_client(self.url, None, api_key_env=self.api_key_env)
        return open_client(None, path or self.path, self.location)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _vectors_config(self, dim: int) -> Any:
        """Hook: the collection's vector parameters."""
        from qdrant_client import models

        dist = {
            "dot": models.Distance.DOT,
            "cosine": models.Distance.COSINE,
            "euclid": models.Distance.EUCLID,
        }[self.distance]
        return models.VectorParams(size=dim, distance=dist, on_disk=self.on_disk)

    def _collection_config(self, dim: int) -> dict[str, Any]:
        """Keyword arguments of ``create_collection``: vectors, quantization and HNSW."""
        from retrievers.stores.qdrant_settings import client_hnsw, client_quantization

        cfg: dict[str, Any] = {"vectors_config": self._vectors_config(dim)}
        if self.quantization is not None:
            cfg["quantization_config"] = client_quantization(self.quantization)
        if self.hnsw_m is not None:
            cfg["hnsw_config"] = client_hnsw(self.hnsw_m, self.hnsw_ef_construct)
        if self.shard_number is not None:
            cfg["shard_number"] = self.shard_number
        if self.replication_factor is not None:
            cfg["replication_factor"] = self.replication_factor
        if self.write_consistency_factor is not None:
            cfg["write_consistency_factor"] = self.write_consistency_factor
        return cfg

    def _search_params(self) -> Any:
        if self.quantization is None and self.hnsw_ef is None:
            return None
        from retrievers.stores.qdrant_settings import client_search_params

        return client_search_params(
            self.quantization, self.rescore, self.oversampling, self.hnsw_ef
        )

    def _ensure(self, dim: int) -> None:
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(self.collection, **self._collection_config(dim))

    def _upsert(self, ids: Sequence[str], vectors: Sequence[Any], payloads: Sequence[dict]) -> None:
        """Upsert ``vectors`` (one list or matrix per id) in batches of ``upsert_batch``."""
        from qdrant_client import models

        points = [
            models.PointStruct(id=point_id(i), vector=v, payload={**p, "doc_id": i})
            for i, v, p in zip(ids, vectors, payloads)
        ]
        for s in range(0, len(points), self.upsert_batch):
            self.client.upsert(self.collection, points=points[s : s + self.upsert_batch], wait=True)

    def _query(self, queries: Sequence[Any], k: int, filter: dict[str, Any] | None) -> list:
        from qdrant_client import models

        validate_filter(filter)
        with qdrant_errors(self.url):
            if not len(queries) or not self.client.collection_exists(self.collection):
                return [[] for _ in queries]
            flt = to_qdrant(filter)
            reqs = [
                models.QueryRequest(
                    query=q,
                    limit=k,
                    filter=flt,
                    with_payload=["doc_id"],
                    params=self._search_params(),
                )
                for q in queries
            ]
            res = self.client.query_batch_points(self.collection, requests=reqs)
        return [[(p.payload["doc_id"], float(p.score)) for p in r.points] for r in res]

    def count(self) -> int:
        with qdrant_errors(self.url):
            if not self.client.collection_exists(self.collection):
                return 0
            return int(self.client.count(self.collection, exact=True).count)

    def add(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        vectors = check_batch(ids, vectors, payloads, np.float32)
        if len(ids):
            with qdrant_errors(self.url):
                self._ensure(vectors.shape[1])
                self._upsert(ids, vectors.tolist(), payloads)

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        with qdrant_errors(self.url):
            if ids and self.client.collection_exists(self.collection):
                self.client.delete(
                    self.collection,
                    points_selector=models.PointIdsList(points=[point_id(i) for i in ids]),
                )

    def search(
        self, queries: np.ndarray, k: int, filter: dict[str, Any] | None = None
    ) -> list[list[tuple[str, float]]]:
        return self._query(np.asarray(queries, dtype=np.float32).tolist(), k, filter)

    def save(self, path: Path) -> None:
        """An in-memory collection is copied to ``path/qdrant``; ``path``/``url`` modes persist
        by themselves."""
        if self.url or self.path:
            return
        from qdrant_client import models

        target = self._connect(str(Path(path) / "qdrant"))
        try:
            if target.collection_exists(self.collection):
                target.delete_collection(self.collection)
            if not self.client.collection_exists(self.collection):
                return
            info = self.client.get_collection(self.collection)
            target.create_collection(self.collection, vectors_config=info.config.params.vectors)
            offset = None
            while True:
                pts, offset = self.client.scroll(
                    self.collection, limit=256, offset=offset, with_vectors=True, with_payload=True
                )
                target.upsert(
                    self.collection,
                    points=[
                        models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in pts
                    ],
                )
                if offset is None:
                    break
        finally:
            target.close()

    def restore(self, path: Path) -> None:
        if self.url or self.path:
            return
        self.close()
        self._client = self._connect(str(Path(path) / "qdrant"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def state(self) -> dict[str, Any]:
        """What an index commit records of this store (:func:`collection_state`)."""
        with qdrant_errors(self.url):
            return collection_state(self.client, self.collection, None if self.url else self.path)

    def check(self, state: dict[str, Any], index: Path) -> None:
        """Check the collection against a commit's :meth:`state` (:func:`check_collection`)."""
        with qdrant_errors(self.url):
            check_collection(state, index, lambda: self.client)
