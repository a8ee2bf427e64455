"""What ``rag eval`` evaluates: an eval config (a pipeline: retriever, rerankers, optional
chunker), indexed once on the dataset the way ``rag index`` would index it.

An eval config is a JSON or YAML file holding a node config (``{"type": "hybrid", ...}``, a
pipeline ``{"type": "pipeline", "retriever": ..., "rerankers": [...]}``) or the same pipeline
without its ``type`` (``{"retriever": ..., "rerankers": [...]}``), plus two optional keys that
belong to the evaluation:

* ``name``: labels the system in the report, the run files and the progress bars (default: the
  config file's stem; made file-name safe: ``bm25 chunks`` becomes ``bm25_chunks``), so two
  hybrid configs are told apart;
* ``chunker``: a chunker config (``{"type": "chunker", "contextual": false}``), or ``true`` for
  the chunker ``rag index`` builds from the retriever's encoder.

How a system is indexed (:func:`prepare`):

* a folder-of-files corpus (:func:`evals.datasets.load_folder`) goes through
  :func:`rag.ingest.indexing.index_paths`, the driver of ``rag index FOLDER``: the same loaders,
  chunker defaults (or the config's chunker) and ids, into a temporary index folder;
* a BEIR corpus with a chunker (the config's, or ``rag eval --chunk``) goes through the same
  driver as ``rag index corpus.jsonl --chunk-records`` would take it;
* any other BEIR corpus is indexed in memory (``node.index(corpus)``).

Either way the pipeline's index-time state is built once, at index time: a late-interaction
reranker's token store (``Pipeline.index``, and ``rerank_fusion``'s own rerankers), so queries
only read it. When the indexed units are chunks (chunked here, or a pre-chunked corpus whose rows
carry ``parent_id``), the retriever is wrapped in :class:`retrievers.parents.ParentRetriever`
(``max`` grouping, MaxP; Dai & Callan, SIGIR 2019) so hits are scored at the level the qrels
name, unless the config's retriever is already a ``parents`` node (whose ``how`` and ``depth``
are then used as written).

>>> system = load_system("hybrid.yaml")                       # doctest: +SKIP
>>> with tempfile.TemporaryDirectory() as tmp:                # doctest: +SKIP
...     runnable, index_s = prepare(system, dataset, Path(tmp))
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.datasets import Dataset
from rag.errors import ConfigError

logger = logging.getLogger("ragnodes.evals")
EVAL_KEYS = ("name", "chunker")


@dataclass
class EvalSystem:
    """One configured system: its label, the node (retriever or pipeline) and how to chunk."""

    name: str
    node: Any
    chunker: Any = None  # a Chunker, or None for rag index's default when ``chunk`` is set
    chunk: bool = False  # index chunks (BEIR corpora); folder corpora are always chunked
    source: str = ""

    def eval_keys(self) -> dict[str, Any]:
        """The eval keys of the config (``name``, ``chunker``), recorded beside the evaluated
        node's own config in ``results.json`` and the runs' sidecars."""
        keys: dict[str, Any] = {"name": self.name}
        if self.chunker is not None:
            keys["chunker"] = self.chunker.to_config()
        elif self.chunk:
            keys["chunker"] = True
        return keys


def slug(text: str) -> str:
    """``text`` as a file-name-safe word (system names in run file names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "system"


def load_system(path: str | Path, chunk: bool = False) -> EvalSystem:
    """Build the system of the eval config at ``path`` (or a packaged preset's name: ``fast``,
    ``quality``; see the module docstring); ``chunk``
    (``rag eval --chunk``) chunks a BEIR corpus with the default chunker when the config names
    none."""
    from rag.ingest import Chunker
    from rag.nodes import Node, _import_all_nodes, load_config_file
    from rag.presets import preset_path, presets

    if not Path(path).exists() and str(path) in presets():  # a packaged preset by name
        path = preset_path(str(path))
    cfg = dict(load_config_file(path))
    name = cfg.pop("name", None)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(f"{path}: 'name' must be a non-empty string, got {name!r}")
    spec = cfg.pop("chunker", None)
    if "type" not in cfg and "retriever" in cfg:
        cfg = {"type": "pipeline", **cfg}
    _import_all_nodes()
    node = Node.from_config(cfg)
    if not (hasattr(node, "retrieve_batch") or hasattr(node, "run_stages")):
        raise ConfigError(
            f"{path}: a {node.name!r} {node.kind} is not a retriever or a pipeline; an eval config "
            "is a retriever, a pipeline, or {retriever, rerankers, chunker}"
        )
    chunker = None
    if isinstance(spec, dict):
        chunker = Node.from_config({"type": "chunker", **spec})
        if not isinstance(chunker, Chunker):
            raise ConfigError(f"{path}: 'chunker' is a {chunker.name}, not a chunker")
    elif spec not in (None, True, False):
        raise ConfigError(f"{path}: 'chunker' must be a chunker config or true, got {spec!r}")
    return EvalSystem(
        name=slug(name.strip() if name else Path(path).stem),  # file-name safe everywhere
        node=node,
        chunker=chunker,
        chunk=chunk or spec is True or chunker is not None,
        source=str(path),
    )


def _retriever(node: Any) -> Any:
    return node.retriever if hasattr(node, "run_stages") else node


def _grouped(node: Any) -> Any:
    """``node`` with its retriever wrapped in a ``parents`` node (unless it is one already)."""
    from retrievers.parents import ParentRetriever

    r = _retriever(node)
    if isinstance(r, ParentRetriever):
        return node
    wrapped = ParentRetriever(r)
    if r is node:
        return wrapped
    node.retriever = wrapped
    return node


def _bar(name: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(desc=f"index {name}", unit="doc", disable=not progress)


def corpus_file(ds: Dataset) -> Path:
    """The ``corpus.jsonl[.gz]`` of a BEIR-layout dataset."""
    for cand in (ds.path / "corpus.jsonl", ds.path / "corpus.jsonl.gz"):
        if cand.exists():
            return cand
    raise ConfigError(f"{ds.path}: no corpus.jsonl to chunk; chunking needs the BEIR corpus file")


def prepare(
    system: EvalSystem, ds: Dataset, workdir: Path, progress: bool = True
) -> tuple[Any, float]:
    """Index ``ds`` for ``system`` (see the module docstring); returns what to evaluate (the
    pipeline, or the retriever when the config is one) and the indexing seconds. ``workdir``
    receives the index folder of a chunked system (the caller deletes it)."""
    from rag.ingest.indexing import IngestSettings, index_paths
    from rag.pipeline import Pipeline

    node = system.node
    bar = _bar(system.name, progress)
    t0 = time.perf_counter()
    if ds.files is not None or system.chunk:
        paths = [ds.files] if ds.files is not None else [corpus_file(ds)]
        out = workdir / slug(system.name)

        def step(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        settings = IngestSettings(
            chunk_records=ds.files is None,
            chunker=system.chunker,
            warn=lambda line: logger.warning("%s: %s", system.name, line),
        )
        index_paths(paths, out, lambda: Pipeline.of(node), settings, progress=step)
        pipe = Pipeline.open(out, read_only=True)
        node = pipe if hasattr(node, "run_stages") else pipe.retriever
        chunked = True
    else:
        bar.total = len(ds.corpus)
        node.index(ds.corpus)
        bar.update(len(ds.corpus))
        chunked = ds.chunked
    bar.close()
    index_s = time.perf_counter() - t0
    return (_grouped(node) if chunked else node), index_s
