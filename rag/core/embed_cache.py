"""An on-disk embedding cache: a corpus is embedded once per (model files, encoder config).

Vectors are stored under ``<root>/<namespace>/`` where the namespace is a hash of the model's
files (name, size and the SHA-256 of ``config.json`` and the weight files' first and last MiB, so
a changed checkpoint gets a new namespace) and of the encoder config that changes the vectors
(:meth:`rag.core.encoders.TransformerEncoder.cache_key`: pooling, precision, max_length, prefixes,
layer...; not batch size or device). Inside, each shard is a pair of ``.npy`` files: the SHA-1 of
every text (hex, ``S40``) and its float32 vector; shards are published atomically through the one
writer (:func:`rag.core.models.publish`: temp file, fsync, rename, fsync of the folder; vectors
first, hashes last), so concurrent writers and a killed process leave no half shard.

The same class is the in-memory document-vector cache: with ``capacity > 0`` the last
``capacity`` vectors are kept in an LRU that is checked before the shards, and with
``folder=None`` there are no shards at all (a memory-only cache).

Where it is used: :class:`~rag.core.encoders.TransformerEncoder` sends documents (never queries)
through the on-disk cache when its ``cache`` folder, ``$RAGNODES_EMBED_CACHE`` or the process
default (:func:`set_default`, set by ``rag eval``) names one; :data:`STATS` counts its hits and
misses. :class:`~rerankers.embedding.EmbeddingReranker` keeps its candidates' unit vectors in a
memory-only one (:func:`memory_cache`), so overlapping candidate pools are encoded once.

>>> cache = memory_cache(capacity=2)
>>> calls = []
>>> embed = lambda texts: calls.append(len(texts)) or np.ones((len(texts), 3), np.float32)
>>> cache.encode(["a", "b", "a"], embed).shape, cache.encode(["b", "a"], embed).shape, calls
((3, 3), (2, 3), [2])
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.models import publish, resolve_model

STATS = {"hits": 0, "misses": 0}
_default: str | None = None
_caches: dict[str, EmbeddingCache] = {}
_pinned: dict[int, EmbeddingCache] = {}
_lock = threading.Lock()


def set_default(root: str | os.PathLike[str] | None) -> None:
    """Use ``root`` for every encoder without its own ``cache`` (``None``: none)."""
    global _default
    _default = str(root) if root is not None else None


def default_root() -> str | None:
    return os.environ.get("RAGNODES_EMBED_CACHE") or _default


def model_fingerprint(model: str) -> str:
    """Hash of a model folder's files (names, sizes, content of config and weights' ends);
    a hub id that is not a local folder hashes as its name."""
    path = Path(resolve_model(model))
    h = hashlib.sha256()
    if not path.is_dir():
        h.update(model.encode())
        return h.hexdigest()[:16]
    return _fingerprint_dir(str(path))


_fingerprints: dict[str, str] = {}


def _fingerprint_dir(path: str) -> str:
    if path in _fingerprints:
        return _fingerprints[path]
    h = hashlib.sha256()
    for f in sorted(Path(path).rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        size = f.stat().st_size
        h.update(f"{f.relative_to(path)}:{size}".encode())
        if f.suffix in (".json", ".txt", ".model") and size < 1 << 24:
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".onnx", ".pt"):
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 1 << 20:
                    fh.seek(max(size - (1 << 20), 1 << 20))
                    h.update(fh.read(1 << 20))
    _fingerprints[path] = h.hexdigest()[:16]
    return _fingerprints[path]


def cache_for(encoder: Any) -> EmbeddingCache | None:
    """The cache an encoder's documents go through, or ``None`` when none is configured
    (vectors pinned by :func:`precomputed` come first)."""
    pinned = _pinned.get(id(encoder))
    if pinned is not None:
        return pinned
    root = getattr(encoder, "cache", None) or default_root()
    if not root:
        return None
    key = json.dumps(
        {"model": _fingerprint_of(encoder), "config": encoder.cache_key()},
        sort_keys=True,
    )
    ns = hashlib.sha256(key.encode()).hexdigest()[:20]
    folder = str(Path(root).expanduser() / ns)
    with _lock:
        if folder not in _caches:
            _caches[folder] = EmbeddingCache(folder, key, stats=STATS)
        return _caches[folder]


@contextlib.contextmanager
def precomputed(
    encoder: Any, texts: Sequence[str], vectors: np.ndarray
) -> Iterator[EmbeddingCache]:
    """Serve ``vectors`` (one row per document text, computed elsewhere by the same encoder
    config: a Ray actor, a remote embedder) to ``encoder.encode(texts, kind="document")`` inside
    the block, from memory only; a text not among them is still encoded. The yielded cache's
    ``stats["misses"]`` counts those (0 when every vector was served). ``texts`` are without the
    encoder's ``document_prefix`` (it is added here, as ``encode`` does).

    >>> with precomputed(enc, ["a"], vecs) as c:                      # doctest: +SKIP
    ...     enc.encode(["a"]); c.stats["misses"]
    0"""
    prefix = getattr(encoder, "document_prefix", "")
    cache = memory_cache(capacity=max(1, len(texts)))
    cache.put([prefix + t for t in texts], vectors)
    with _lock:
        _pinned[id(encoder)] = cache
    try:
        yield cache
    finally:
        with _lock:
            _pinned.pop(id(encoder), None)


def _fingerprint_of(encoder: Any) -> str:
    """The encoder's own ``fingerprint()`` (a remote model has no local files), else the hash
    of its model folder (:func:`model_fingerprint`)."""
    own = getattr(encoder, "fingerprint", None)
    return str(own()) if callable(own) else model_fingerprint(encoder.model)


def memory_cache(capacity: int) -> EmbeddingCache:
    """A cache of the last ``capacity`` vectors in memory only (``0``: nothing is kept; each
    distinct text of one call is still computed once). Its ``stats`` are its own."""
    return EmbeddingCache(None, "", capacity=capacity)


def _save_npy(tmp: Path, arr: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, arr)


def text_hashes(texts: Sequence[str]) -> list[bytes]:
    return [hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest().encode() for t in texts]


class EmbeddingCache:
    """Text-hash -> vector for one model + encoder config: an LRU of the last ``capacity``
    vectors in memory (checked first), then the shards in ``folder`` (``None``: no disk tier).
    ``stats`` counts hits and misses (:data:`STATS` for the encoders' on-disk caches)."""

    def __init__(
        self,
        folder: str | os.PathLike[str] | None,
        key: str,
        capacity: int = 0,
        stats: dict[str, int] | None = None,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.key = key
        self.capacity = capacity
        self.stats = stats if stats is not None else {"hits": 0, "misses": 0}
        self._memory: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._index: dict[bytes, tuple[str, int]] = {}
        self._seen: set[str] = set()
        self._vecs: dict[str, np.ndarray] = {}

    def _refresh(self) -> None:
        if self.folder is None or not self.folder.is_dir():
            return
        for f in sorted(self.folder.glob("*.hashes.npy")):
            shard = f.name[: -len(".hashes.npy")]
            if shard in self._seen:
                continue
            self._seen.add(shard)
            for r, hsh in enumerate(np.load(f).tolist()):
                self._index.setdefault(hsh, (shard, r))

    def _vectors(self, shard: str) -> np.ndarray:
        if shard not in self._vecs:
            if self.folder is None:  # shards are indexed only under a folder
                raise KeyError(shard)
            self._vecs[shard] = np.load(self.folder / f"{shard}.vecs.npy", mmap_mode="r")
        return self._vecs[shard]

    def __len__(self) -> int:
        self._refresh()
        return len(self._index.keys() | self._memory.keys())

    def _lookup(self, hsh: bytes) -> np.ndarray | None:
        """The stored vector of one text hash (memory first, then disk), or ``None``."""
        if hsh in self._memory:
            self._memory.move_to_end(hsh)
            return self._memory[hsh]
        if hsh in self._index:
            shard, r = self._index[hsh]
            vec = np.array(self._vectors(shard)[r], dtype=np.float32)
            self._remember([hsh], vec[None])
            return vec
        return None

    def encode(self, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors for ``texts``: cached ones read back, the others computed by ``embed`` (each
        distinct text once, in order of first appearance) and stored."""
        hashes = text_hashes(texts)
        self._refresh()
        found: dict[bytes, np.ndarray] = {}
        missing: dict[bytes, int] = {}
        for i, hsh in enumerate(hashes):
            if hsh in found or hsh in missing:
                continue
            vec = self._lookup(hsh)
            if vec is None:
                missing[hsh] = i
            else:
                found[hsh] = vec
        if missing:
            new = np.asarray(embed([texts[i] for i in missing.values()]), dtype=np.float32)
            self._store(list(missing), new)
            found.update(zip(missing, new))
        self.stats["misses"] += len(missing)
        self.stats["hits"] += len(texts) - len(missing)
        return np.array([found[h] for h in hashes], dtype=np.float32)

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The distinct ``texts`` this cache does not hold, in order of first appearance."""
        self._refresh()
        out: dict[bytes, str] = {}
        for t, hsh in zip(texts, text_hashes(texts), strict=True):
            if hsh not in out and self._lookup(hsh) is None:
                out[hsh] = t
        return list(out.values())

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (one row per text) computed elsewhere by the same model."""
        vectors = np.asarray(vectors, dtype=np.float32)
        self._store(text_hashes(texts), vectors)

    def _store(self, hashes: list[bytes], vecs: np.ndarray) -> None:
        if self.folder is not None:
            self._write(self.folder, hashes, vecs)
        self._remember(hashes, vecs)

    def _remember(self, hashes: list[bytes], vecs: np.ndarray) -> None:
        if not self.capacity:
            return
        for hsh, v in zip(hashes, vecs, strict=True):
            self._memory[hsh] = v
            self._memory.move_to_end(hsh)
        while len(self._memory) > self.capacity:
            self._memory.popitem(last=False)

    def _write(self, folder: Path, hashes: list[bytes], vecs: np.ndarray) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        key_file = folder / "key.json"
        if not key_file.exists():
            publish(key_file, lambda tmp: tmp.write_text(self.key, encoding="utf-8"))
        shard = uuid.uuid4().hex
        for suffix, arr in ((".vecs.npy", vecs), (".hashes.npy", np.array(hashes, dtype="S40"))):
            publish(folder / f"{shard}{suffix}", functools.partial(_save_npy, arr=arr))
        self._seen.add(shard)
        self._vecs[shard] = vecs
        for r, hsh in enumerate(hashes):
            self._index.setdefault(hsh, (shard, r))
