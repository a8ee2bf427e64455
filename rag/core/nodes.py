"""The node contract: what every retriever, reranker, compressor and generator promises.

Contract (checked for every registered implementation by ``tests/nodes/test_contract.py``):

* ``__init__`` only stores and validates configuration: no disk, network or model access.
  Heavy state is created by ``load()``, which is idempotent and called on first use.
* Every node round-trips through a JSON-safe config: ``Node.from_config(node.to_config())``
  builds an equal node. Nested nodes serialise recursively; secrets are env-var names.
* Nodes never mutate their inputs; they return new frozen values.
* Retrievers: ``retrieve(query, k)`` returns a :class:`~rag.core.types.Ranking` sorted by score
  (descending, ties by document id), with at most ``k`` hits and unique ids; an empty index gives
  an empty ranking; ``k`` larger than the index gives every document once (lexical retrievers
  with ``matching_only = True`` give only the documents that share a term with the query, so a
  query with no indexed term has no hits); the same input gives
  the same output; ``retrieve_batch(qs, k)`` equals ``[retrieve(q, k) for q in qs]``. A bad
  ``k``, query or filter is one :class:`~rag.core.errors.ConfigError`, the same from every retriever
  (``BaseRetriever.check_request``, made once per request, composites included).
* Rerankers: ``rerank(ranking, k)`` returns a new ranking of (a subset of) the same documents,
  with the same ordering guarantees.
* Compressors: ``compress(ranking)`` returns a ranking whose documents carry shortened text and the
  achieved compression ratio in ``metadata["compression"]``.
* Generators: ``generate(messages)`` returns text; ``stream(messages)`` yields text pieces whose
  concatenation equals ``generate(messages)`` under greedy decoding.

A concrete node fills in one small hook (``_search``, ``_score``, ...); the base classes here own
argument checks, batching, ordering and the config round-trip.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Iterator, MutableMapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, cast, runtime_checkable

from rag.core.errors import ConfigError, InputError, NotIndexedError, RagError
from rag.core.types import (
    Document,
    Query,
    Ranking,
    ScoredBatch,
    ScoredIds,
    as_documents,
    as_query,
    fetch_documents,
    unique_ids,
)

logger = logging.getLogger("ragnodes")
logger.addHandler(logging.NullHandler())

REGISTRY: dict[str, type[Node]] = {}
_N = TypeVar("_N", bound="Node")


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise InputError(f"k must be an int >= 1, got {k!r}")
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    return k


def check_query(query: Query | str) -> Query:
    q = as_query(query)
    if not q.text.strip():
        raise InputError(f"query {q.id!r} has empty text; pass a non-empty question")
    return q


def check_filter(flt: Any) -> dict[str, Any] | None:
    """A metadata filter checked once and returned in canonical form (:mod:`rag.core.filters`, the
    one parser of the filter language: equality, ``$in``/``$nin``, ``$ne``, ranges, ``$exists``,
    ``$and``/``$or``/``$not``), so every node below reads the same plain dicts.

    >>> check_filter({"year": {"gte": 2018}})
    {'year': {'$gte': 2018}}
    """
    from rag.core.filters import parse_filter

    return parse_filter(flt)


def candidate_depth(k: int, depth: int | None = None, default: int = 100) -> int:
    """The one candidate-depth policy: how many candidates a stage asks of the stage below it
    when it must return ``k``: the configured ``depth`` (else ``default``), never fewer than
    ``k``. Used by every composite retriever (hybrid, rerank fusion, think, Qdrant hybrid) and
    by the pipeline before its rerankers.

    >>> candidate_depth(10), candidate_depth(500), candidate_depth(10, depth=20)
    (100, 500, 20)
    """
    return max(k, depth if depth is not None else default)


# The per-call records of the queries a hook is handling (Node.record): held by the call's
# context, one per thread and asyncio task, never by the (shared) node.
_RECORDS: ContextVar[list[dict[str, Any]] | None] = ContextVar("node_records", default=None)


class Node:
    """Base of every node: registry, lazy ``load()`` and the config round-trip.

    The config is read from the ``__init__`` signature: each parameter must be stored on the
    instance under the same name. Subclasses set a class attribute ``name`` to register.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "node"
    # importable modules this node needs; constructing it without them raises MissingExtraError
    requires: ClassVar[tuple[str, ...]] = ()
    _loaded: bool = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Node:
        import importlib.util

        from rag.core.extras import require

        for module in cls.requires:
            if importlib.util.find_spec(module) is None:
                require(module, feature=f"{cls.__name__}")  # raises, naming the install command
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            if cls.name in REGISTRY and REGISTRY[cls.name].__qualname__ != cls.__qualname__:
                raise ConfigError(f"node name {cls.name!r} registered twice")
            REGISTRY[cls.name] = cls

    def load(self: _N) -> _N:
        """Create heavy state (models, indexes). Idempotent; returns ``self``."""
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def _load(self) -> None:
        """Hook: load models. Default: nothing to load."""

    # -- per-call records -----------------------------------------------------------------------
    @staticmethod
    def record(i: int = 0) -> dict[str, Any]:
        """Inside a hook: the per-call record of the ``i``-th query the hook was handed (a
        reranker's ``_score``: its one query; ``_score_batch``: ``rankings[i]``; a retriever's
        ``_search``: ``queries[i]``), which the base class copies into that output's
        ``Ranking.provenance``. The records live in the call's context (a ``ContextVar``: one per
        thread and per asyncio task), never on the node, so concurrent calls on one shared node
        never see each other's. Outside a call (a hook called directly) it is a fresh dict that
        nobody reads."""
        recs = _RECORDS.get()
        return recs[i] if recs is not None else {}

    @staticmethod
    def _record_provenance(prov: dict[str, str], rec: dict[str, Any]) -> dict[str, Any]:
        """``prov`` plus a hook's record (integers as strings, as in :meth:`provenance`)."""
        got = {key: str(v) if isinstance(v, int) else v for key, v in rec.items()}
        return {**prov, **got}

    # -- config ---------------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"type": self.name}
        for p in inspect.signature(type(self).__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            cfg[p.name] = _to_json(getattr(self, p.name))
        return cfg

    @staticmethod
    def from_config(config: dict[str, Any] | str | os.PathLike[str]) -> Node:
        """Rebuild a node (recursively) from :meth:`to_config` output or a JSON/YAML file."""
        if not isinstance(config, dict):
            config = load_config_file(config)
        return _from_json(config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "type")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_config() == other.to_config()  # type: ignore[attr-defined]

    __hash__ = object.__hash__


def _to_json(v: Any) -> Any:
    if isinstance(v, Node):
        return v.to_config()
    if isinstance(v, (list, tuple)):
        return [_to_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _to_json(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    raise ConfigError(f"value {v!r} of type {type(v).__name__} is not JSON-safe in a node config")


def _from_json(v: Any) -> Any:
    if isinstance(v, dict) and "type" in v and isinstance(v["type"], str) and v["type"] in REGISTRY:
        params = {k: _from_json(x) for k, x in v.items() if k != "type"}
        return build_node(REGISTRY[v["type"]], params)
    if isinstance(v, dict) and "type" in v and isinstance(v["type"], str):
        raise ConfigError(unknown_type(v["type"]))
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    if isinstance(v, dict):
        return {k: _from_json(x) for k, x in v.items()}
    return v


def build_node(cls: type[Node], params: dict[str, Any]) -> Node:
    """Construct ``cls`` from config ``params``, checked field by field first
    (:mod:`rag.core.config`); a constructor's own ``TypeError`` becomes a :class:`ConfigError`."""
    from rag.core.config import validate_params

    params = validate_params(cls, params)
    try:
        return cls(**params)
    except TypeError as e:
        raise ConfigError(f"{cls.name}: {e}") from None


# Registration comes from above: a node class registers when its module is imported, and this
# module imports no node package. ``import rag.pipeline`` registers every type a pipeline
# composes (retrievers, rerankers, generators, compressors, encoders and its own);
# ``import rag.ingest`` adds the chunker and the situator; ``import rag.app`` registers all.
def unknown_type(name: str) -> str:
    """The one-line error for an unknown node type; before ``rag.pipeline`` is imported (the
    common case: a script that imported ``rag.core.nodes`` only) it says what to import."""
    known = ", ".join(sorted(REGISTRY)) or "none"
    if "pipeline" in REGISTRY:  # rag.pipeline is imported: every composable type is registered
        return f"unknown node type {name!r}; known types: {known}"
    return (
        f"unknown node type {name!r} (registered so far: {known}); node types register when "
        "their package is imported: import rag.pipeline (every retriever, reranker, generator, "
        "compressor and encoder) or rag.ingest (adds the chunker and the situator) first"
    )


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a node/pipeline config from ``.json`` or ``.yaml``/``.yml``."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: not a text config (byte {e.start} is not UTF-8); give a .json or .yaml file"
        ) from None
    if p.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            line = f":{where.line + 1}" if where is not None else ""
            raise ConfigError(f"{p}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a mapping with a 'type' key")
    try:
        json.dumps(data, default=str)
    except ValueError:  # YAML anchors can make a value contain itself: a: &a [*a]
        raise ConfigError(
            f"{p}: a value contains itself (a YAML alias inside its own anchor); a config must "
            "be a tree"
        ) from None
    return data


# -- protocols --------------------------------------------------------------------------------
# What the application layer (Pipeline, agent, chat, server, integrations) may call on a node; the
# base classes below implement them, and collaborators are typed by them, not by ``Any``.
@runtime_checkable
class Retriever(Protocol):
    name: ClassVar[str]

    @property
    def documents(self) -> MutableMapping[str, Document]: ...
    def __len__(self) -> int: ...
    def load(self) -> Any: ...
    def index(self, documents: Sequence[Document | dict[str, Any]]) -> Any: ...
    def delete(self, ids: Sequence[str]) -> int: ...
    def retrieve(self, query: Query | str, k: int = 10, filter: dict | None = None) -> Ranking: ...
    def retrieve_batch(
        self, queries: Sequence[Query | str], k: int = 10, filter: dict | None = None
    ) -> list[Ranking]: ...
    def to_config(self) -> dict[str, Any]: ...


@runtime_checkable
class Reranker(Protocol):
    name: ClassVar[str]

    def load(self) -> Any: ...
    def rerank(self, ranking: Ranking, k: int | None = None) -> Ranking: ...
    def rerank_batch(self, rankings: Sequence[Ranking], k: int | None = None) -> list[Ranking]: ...
    def to_config(self) -> dict[str, Any]: ...


@runtime_checkable
class Compressor(Protocol):
    name: ClassVar[str]

    def load(self) -> Any: ...
    def compress(self, ranking: Ranking) -> Ranking: ...
    def to_config(self) -> dict[str, Any]: ...


@runtime_checkable
class Generator(Protocol):
    """Sampling settings are per call; ``None`` keeps the generator's own."""

    def load(self) -> Any: ...
    def generate(
        self,
        messages: list[dict[str, str]] | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> str: ...
    def stream(
        self,
        messages: list[dict[str, str]] | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]: ...
    def to_config(self) -> dict[str, Any]: ...


# -- base classes -----------------------------------------------------------------------------
class BaseRetriever(Node):
    """Owns the document table, ``k`` checks, batching and ordering.

    Subclasses implement ``_add(docs)``, ``_delete(ids)`` and
    ``_search(queries, k, filter) -> list[list[(doc_id, score)]]`` (any order, may exceed k), or
    one :class:`~rag.core.types.ScoredIds` per query (unique ids and a scores array: the batch stays
    arrays, and documents are read only for the ``k`` hits returned).
    ``uses_instruction`` says whether ``Query.instruction`` changes the result (else the pipeline
    can warn that it is ignored). ``retrieve_batch`` checks ``k``, the queries and the filter
    once (:meth:`check_request`) and hands the checked request to ``_retrieve``; retrievers made
    of other retrievers derive from :class:`retrievers.composite.CompositeRetriever`.
    """

    kind: ClassVar[str] = "retriever"
    uses_instruction: ClassVar[bool] = False
    # False: a filter is refused with one error at the edge (``check_request``)
    supports_filter: ClassVar[bool] = True

    @property
    def documents(self) -> dict[str, Document]:
        if not hasattr(self, "_docs"):
            self._docs: dict[str, Document] = {}
        return self._docs

    def __len__(self) -> int:
        return len(self.documents)

    def index(self, documents: Sequence[Document | dict[str, Any]]) -> BaseRetriever:
        """Add documents; a document whose id is already indexed replaces the old one."""
        docs = as_documents(documents)
        unique_ids(docs)
        if not docs:
            return self
        self.load()
        replaced = [d.id for d in docs if d.id in self.documents]
        if replaced:
            self.delete(replaced)
        self._add(docs)
        for d in docs:
            self.documents[d.id] = d
        return self

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; returns how many were present."""
        present = [i for i in ids if i in self.documents]
        if present:
            self.load()
            self._delete(present)
            for i in present:
                del self.documents[i]
        return len(present)

    def retrieve(self, query: Query | str, k: int = 10, filter: dict | None = None) -> Ranking:
        return self.retrieve_batch([query], k=k, filter=filter)[0]

    def retrieve_batch(
        self, queries: Sequence[Query | str], k: int = 10, filter: dict | None = None
    ) -> list[Ranking]:
        """Check the request once (:meth:`check_request`), then run :meth:`_retrieve`; the
        returned hits' documents are read before returning (a later write does not change
        them)."""
        qs, flt = self.check_request(queries, k, filter)
        out = self._retrieve(qs, k, flt)
        fetch_documents(out)  # the documents of what is returned, read now (rag.core.types)
        return out

    def check_request(
        self, queries: Sequence[Query | str], k: int, filter: Any = None
    ) -> tuple[list[Query], dict[str, Any] | None]:
        """The one validation of a retrieval request: ``k``, every query (non-empty text), the
        filter (syntax, and whether this retriever can apply one). Composite retrievers call
        their children's :meth:`_retrieve`, so a query is checked once, by the outermost node."""
        check_k(k)
        qs = [check_query(q) for q in queries]
        flt = check_filter(filter)
        if flt is not None and not self.supports_filter:
            raise ConfigError(f"{self.name} does not support metadata filters; pass filter=None")
        return qs, flt

    def _retrieve(
        self, queries: list[Query], k: int, filter: dict[str, Any] | None
    ) -> list[Ranking]:
        """The loop on a checked request: empty index, ``load()``, :meth:`_search`, ordering and
        the cut to ``k``. Override only when results do not come from ``self.documents``."""
        if not queries:
            return []
        if not self.documents:
            return [Ranking(query=q, stage=self.name) for q in queries]
        self.load()
        records: list[dict[str, Any]] = [{} for _ in queries]
        token = _RECORDS.set(records)  # what _search records per query (Node.record)
        try:
            results = self._search(queries, min(k, len(self.documents)), filter)
        finally:
            _RECORDS.reset(token)
        docs = self.documents
        if isinstance(results, ScoredBatch) or all(isinstance(res, ScoredIds) for res in results):
            # arrays: one pass for the batch
            arrays = cast(list[ScoredIds], results)
            built = Ranking.batch_from_arrays(queries, arrays, docs, k, self.name)
        else:
            built = [
                Ranking.from_arrays(q, res.ids, res.scores, docs, k, self.name)
                if isinstance(res, ScoredIds)
                else Ranking.from_scored(
                    q, ((docs[i], float(s)) for i, s in res if i in docs), k, self.name
                )
                for q, res in zip(queries, results)
            ]
        out = []
        for r, rec in zip(built, records):
            if rec:
                r = r.model_copy(update={"provenance": self._record_provenance({}, rec)})
            out.append(r)
        return out

    # hooks
    def _add(self, docs: list[Document]) -> None:
        raise NotImplementedError

    def _delete(self, ids: list[str]) -> None:
        raise NotImplementedError

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]] | Sequence[ScoredIds]:
        raise NotImplementedError

    # persistence: saving is an index operation (rag.index.write_index(retriever, path), or
    # Pipeline.save); the node only fills the state hooks
    def _save_state(self, path: Path) -> None:
        """Hook: write index state (vectors, postings) under ``path``."""

    def _load_state(self, path: Path) -> None:
        """Hook: read what ``_save_state`` wrote. Default: re-index the saved documents."""
        docs = list(self.documents.values())
        if docs:
            self.load()
            self._add(docs)

    # the index layer (rag.index): documents live in one store; a retriever keeps its own state
    def _share_documents(self, documents: Any) -> None:
        """Read documents from ``documents`` (a mapping shared with the index's other nodes)."""
        self._docs = documents

    def _commit_state(self, commit: Any, part: str) -> dict[str, Any]:
        """Hook: write this node's state into ``commit`` (a :class:`rag.index.folder.Commit`);
        returns JSON for the manifest. Default: a snapshot of ``_save_state`` in a new folder."""
        name = commit.new_name(part)
        (commit.folder / name).mkdir(parents=True, exist_ok=True)
        self._save_state(commit.folder / name)
        commit.put_tree(name)
        return {"dir": name}

    def _open_state(self, folder: Path, state: dict[str, Any]) -> None:
        """Hook: open what ``_commit_state`` wrote (files already verified)."""
        self._load_state(folder / state["dir"])


class BaseReranker(Node):
    """Owns the reranking loop; a concrete reranker fills in one scoring hook.

    ``rerank_batch(rankings, k)`` (and ``rerank``, one ranking) does, for every reranker:

    1. checks ``k`` and loads the model (:meth:`load`);
    2. de-duplicates each input ranking (the first occurrence of a repeated id is kept);
    3. scores the candidates of ``query_batch_size`` queries at a time (``None``: all at once)
       through the hook below; an empty ranking is never sent to it;
    4. sorts by score (ties by id, :meth:`Ranking.from_scored`), keeps the hits scoring
       ``>= threshold`` (all when ``threshold`` is None) but at least ``min_k``, and at most
       ``k`` / ``max_k``;
    5. labels each output ``Ranking.stage`` with :attr:`stage` (``name``, plus the model and
       backend from :meth:`provenance` when the reranker runs one) and sets each output's
       ``Ranking.provenance``: :meth:`provenance` plus what the hook recorded for that query.

    The hooks (implement exactly one):

    * ``_score(query, docs) -> scores``: pointwise, one score per document of one query
      (embedding, cross-encoder, LLM yes/no).
    * ``_score_batch(rankings) -> [scores]``: the candidates of several queries at once, each
      ranking with unique ids and at least one hit; for rerankers that batch across queries, read
      the input scores (the relevance filter) or order passages listwise (they return
      :meth:`rank_scores` of their permutation: ``n`` for the best of ``n``, ``1`` for the last).
      The default calls ``_score`` per query; a reranker that implements ``_score_batch`` gets
      ``_score`` in return (the documents in the given order are the prior ranking).

    Optional: :meth:`provenance` (what produced the scores, for the stage label) and
    :meth:`Node.record` (inside a hook: a fresh per-call dict for one of the hook's rankings, held
    by the call's context, never by the node; integers become strings, lists stay lists, in that
    output's ``Ranking.provenance``). Per-class defaults
    (``threshold``, ``min_k``, ``max_k``, ``query_batch_size``) are attributes a reranker's
    ``__init__`` may set from its config.

    >>> class ByLength(BaseReranker):                       # a complete reranker
    ...     def _score(self, query, docs):
    ...         return [float(len(d.text)) for d in docs]
    >>> r = Ranking.from_scored(Query(text="q"), [(Document(id="a", text="xx"), 1.0),
    ...                                          (Document(id="b", text="xxx"), 0.5)])
    >>> ByLength().rerank(r, k=1).ids
    ['b']
    """

    kind: ClassVar[str] = "reranker"
    uses_instruction: ClassVar[bool] = False
    threshold: float | None = None  # drop hits scoring below this (None keeps every hit)
    min_k: int = 0  # keep at least this many hits per query, whatever the threshold
    max_k: int | None = None  # keep at most this many (besides rerank's k)
    query_batch_size: int | None = None  # queries per _score_batch call (None: all at once)

    @staticmethod
    def check_threshold(threshold: float | None) -> float | None:
        """``threshold`` itself when it is a number or None; else a :class:`ConfigError`."""
        if threshold is None:
            return None
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ConfigError(f"threshold must be a number or None, got {threshold!r}")
        return threshold

    @staticmethod
    def rank_scores(order: Sequence[int]) -> list[float]:
        """Rank-derived scores of a permutation ``order`` (indices, best first) of ``n``
        candidates: candidate ``order[p]`` scores ``n - p``, so the best scores ``n``, the last 1.

        >>> BaseReranker.rank_scores([2, 0, 1])
        [2.0, 1.0, 3.0]
        """
        scores = [0.0] * len(order)
        for pos, i in enumerate(order):
            scores[i] = float(len(order) - pos)
        return scores

    def provenance(self) -> dict[str, str]:
        """Hook: what produces the scores (``model``, ``backend``, ``backend_version``, prompt
        version...). Default: nothing recorded."""
        return {}

    @property
    def stage(self) -> str:
        """``Ranking.stage`` of the outputs: ``name``, or ``name:<model>@<backend>-<version>``
        when :meth:`provenance` names them (e.g. ``llm_listwise:smollm2-135m@transformers-5.2``)."""
        prov = self.provenance()
        if {"model", "backend", "backend_version"} <= prov.keys():
            return f"{self.name}:{prov['model']}@{prov['backend']}-{prov['backend_version']}"
        return self.name

    def rerank(self, ranking: Ranking, k: int | None = None) -> Ranking:
        return self.rerank_batch([ranking], k=k)[0]

    def rerank_batch(self, rankings: Sequence[Ranking], k: int | None = None) -> list[Ranking]:
        if k is not None:
            check_k(k)
        self.load()
        pools = [self._unique(r) for r in rankings]
        records: list[dict[str, Any]] = [{} for _ in pools]
        scores: dict[int, Sequence[float]] = {}
        # queries are grouped by position, empty ones included, so that a group is the same
        # whatever its rankings hold; empty rankings are then left out of the hook's call
        size = self.query_batch_size or max(len(pools), 1)
        for start in range(0, len(pools), size):
            group = [i for i in range(start, start + size) if i < len(pools) and pools[i].hits]
            if not group:
                continue
            token = _RECORDS.set([records[i] for i in group])
            try:
                got = self._score_batch([pools[i] for i in group])
            finally:
                _RECORDS.reset(token)
            for i, s in zip(group, got, strict=True):
                if len(s) != len(pools[i].hits):
                    raise RagError(
                        f"{type(self).__name__} returned {len(s)} scores "
                        f"for {len(pools[i].hits)} documents"
                    )
                scores[i] = s
        stage, prov = self.stage, self.provenance()
        out = []
        for i, pool in enumerate(pools):
            docs = [h.document for h in pool.hits]
            ranked = Ranking.from_scored(pool.query, zip(docs, scores.get(i, ())), None, stage)
            record = self._record_provenance(prov, records[i])
            if record:
                ranked = ranked.model_copy(update={"provenance": record})
            out.append(self._cut(ranked, k))
        return out

    @staticmethod
    def _unique(ranking: Ranking) -> Ranking:
        """``ranking`` with the first occurrence of each document id only."""
        ids = ranking.ids
        if len(set(ids)) == len(ids):
            return ranking
        first: dict[str, Any] = {}  # id -> its first Hit
        for h in ranking.hits:
            first.setdefault(h.id, h)
        return ranking.model_copy(update={"hits": tuple(first.values())})

    def _cut(self, ranking: Ranking, k: int | None) -> Ranking:
        """The hits scoring ``>= threshold`` (at least ``min_k``), at most ``k`` and ``max_k``."""
        hits = ranking.hits
        if self.threshold is not None:
            kept = tuple(h for h in hits if h.score >= self.threshold)
            floor = min(self.min_k, len(hits))
            hits = kept if len(kept) >= floor else hits[:floor]
        caps = [c for c in (k, self.max_k) if c is not None]
        if caps:
            hits = hits[: min(caps)]
        return ranking if hits is ranking.hits else ranking.model_copy(update={"hits": hits})

    # index-time state (rag.index): one hook pair for every node, committed into the manifest
    def index_documents(self, docs: Sequence[Document]) -> None:
        """Hook: precompute per-document state when documents are indexed (late interaction's
        token vectors); ``Pipeline.index`` calls it in the same commit. Default: nothing."""

    def delete_documents(self, ids: Sequence[str]) -> None:
        """Hook: forget the state of deleted documents. Default: nothing."""

    def _commit_state(self, commit: Any, part: str) -> dict[str, Any] | None:
        """Hook: write index-time state into ``commit`` (a :class:`rag.index.folder.Commit`) and
        return JSON for the manifest; ``None`` (the default): no state."""
        return None

    def _open_state(self, folder: Path, state: dict[str, Any] | None) -> None:
        """Hook: open what ``_commit_state`` wrote (``None``: the index holds no state for this
        reranker). Default: nothing."""

    def _score_batch(self, rankings: Sequence[Ranking]) -> list[Sequence[float]]:
        """Hook: scores for the hits of each ranking (unique ids, non-empty), in hit order.
        Default: :meth:`_score` per ranking, each with that ranking's :meth:`record`."""
        recs = _RECORDS.get()
        out = []
        for j, r in enumerate(rankings):
            token = _RECORDS.set([recs[j] if recs is not None else {}])
            try:
                out.append(self._score(r.query, [h.document for h in r.hits]))
            finally:
                _RECORDS.reset(token)
        return out

    def _score(self, query: Query, docs: list[Document]) -> Sequence[float]:
        """Hook: one score per document of ``docs`` for ``query`` (higher is more relevant).

        Default, for a reranker that implements ``_score_batch``: ``docs`` in the given order
        are its prior ranking (a repeated id scores as its first copy)."""
        if type(self)._score_batch is BaseReranker._score_batch:
            raise NotImplementedError(f"{type(self).__name__} implements no scoring hook")
        if not docs:
            return []
        self.load()
        prior = Ranking.from_scored(query, ((d, float(len(docs) - i)) for i, d in enumerate(docs)))
        token = _RECORDS.set([{}])  # a direct call: its record is nobody's
        try:
            scores = dict(zip(prior.ids, self._score_batch([prior])[0], strict=True))
        finally:
            _RECORDS.reset(token)
        return [scores[d.id] for d in docs]


def require_indexed(retriever: BaseRetriever) -> None:
    if not retriever.documents:
        raise NotIndexedError(f"{type(retriever).__name__} has no documents; call index() first")
