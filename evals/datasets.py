"""Judged collections: BEIR-layout folders (``.jsonl`` or ``.jsonl.gz``), folder-of-files corpora,
or a public BEIR set downloaded.

BEIR layout (BEIR's ``GenericDataLoader``)::

    <root>/corpus.jsonl[.gz]    {"_id", "title"?, "text", ...}
    <root>/queries.jsonl[.gz]   {"_id", "text", ...}
    <root>/qrels/<split>.tsv    header "query-id<TAB>corpus-id<TAB>score", integer scores

Folder-of-files layout (:func:`load_folder`): ``<root>/docs/`` instead of ``corpus.jsonl``, read by
the loaders of ``rag index`` (:func:`rag.ingest.load_paths`), so a file's document id is its path
relative to ``docs/`` (``report-0001.md``), the id the qrels name. :attr:`Dataset.files` is that
folder: ``rag eval`` indexes it with :func:`rag.ingest.indexing.index_paths`, chunks and all.

A *pre-chunked* corpus (rows with a ``parent_id`` field, as :class:`rag.ingest.Chunker` writes)
may be judged at the parent level: a judged id that is a chunk's parent counts as present.

Bad lines raise :class:`~rag.core.errors.DataError` naming file and line. Judgments that point at a
document missing from the corpus or a query missing from the queries file are not dropped
silently: they are listed in :attr:`Dataset.warnings` (unknown queries cannot be run and leave the
qrels; unknown documents stay, as trec_eval counts them in the ideal ranking).

>>> ds = load_beir("../shared/datasets/adi")  # doctest: +SKIP
>>> len(ds.queries), ds.qrels["1"]["17"]      # doctest: +SKIP
(35, 1)
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.core.errors import DataError
from rag.core.types import Document, Query
from rag.index.persist import iter_jsonl
from rag.pipeline.parents import parent_of

logger = logging.getLogger("ragnodes.evals")
logger.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Dataset:
    """A judged collection. ``queries`` are those judged in ``split`` unless loaded with
    ``all_queries=True``; ``qrels`` is ``qid -> docid -> int``."""

    name: str
    path: Path
    split: str
    corpus: list[Document]
    queries: list[Query]
    qrels: dict[str, dict[str, int]]
    warnings: list[str] = field(default_factory=list)
    files: Path | None = None  # a folder-of-files corpus: the folder ``rag index`` would read

    @property
    def chunked(self) -> bool:
        """Whether the corpus rows are chunks of judged parents (pre-chunked)."""
        return any(parent_of(d) != d.id for d in self.corpus)

    def summary(self) -> str:
        return (
            f"{self.name}/{self.split}: {len(self.corpus)} docs, {len(self.queries)} queries, "
            f"{sum(len(v) for v in self.qrels.values())} judgments"
        )


def _find(root: Path, stem: str) -> Path:
    for cand in (root / stem, root / f"{stem}.gz"):
        if cand.exists():
            return cand
    raise DataError(f"{root}: no {stem} or {stem}.gz; is this a BEIR-layout folder?")


def _require(row: dict[str, Any], key: str, path: Path, lineno: int) -> str:
    value = row.get(key)
    if value is None:
        raise DataError(f"{path}:{lineno}: missing field {key!r}")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise DataError(f"{path}:{lineno}: field {key!r} must be a string, got {value!r}")
    return str(value)


def read_corpus(path: Path) -> list[Document]:
    docs: list[Document] = []
    seen: set[str] = set()
    for lineno, row in iter_jsonl(path):
        doc_id = _require(row, "_id", path, lineno)
        if doc_id in seen:
            raise DataError(f"{path}:{lineno}: duplicate document id {doc_id!r}")
        seen.add(doc_id)
        text = row.get("text")
        if not isinstance(text, str):
            raise DataError(f"{path}:{lineno}: field 'text' must be a string, got {text!r}")
        title = row.get("title") or ""
        meta = {k: v for k, v in row.items() if k not in ("_id", "text", "title")}
        docs.append(Document(id=doc_id, text=text, title=str(title), metadata=meta))
    return docs


def read_queries(path: Path) -> list[Query]:
    out: list[Query] = []
    for lineno, row in iter_jsonl(path):
        qid = _require(row, "_id", path, lineno)
        out.append(Query(id=qid, text=_require(row, "text", path, lineno)))
    return out


def read_beir_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (header line, then ``qid<TAB>docid<TAB>score``)."""
    qrels: dict[str, dict[str, int]] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").split("\t")
            if lineno == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise DataError(
                    f"{path}:{lineno}: expected 3 tab-separated fields "
                    f"'query-id corpus-id score', got {len(parts)}"
                )
            qid, doc, score = (p.strip() for p in parts)
            try:
                rel = int(score)
            except ValueError:
                raise DataError(f"{path}:{lineno}: score {score!r} is not an integer") from None
            q = qrels.setdefault(qid, {})
            if doc in q:
                raise DataError(f"{path}:{lineno}: document {doc!r} judged twice for query {qid!r}")
            q[doc] = rel
    return qrels


def load_beir(
    path: str | os.PathLike[str], split: str = "test", all_queries: bool = False
) -> Dataset:
    """Load a BEIR-layout folder. ``split`` picks ``qrels/<split>.tsv``."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"dataset folder {str(root)!r} does not exist")
    qrels_path = _qrels_path(root, split)
    corpus = read_corpus(_find(root, "corpus.jsonl"))
    queries = read_queries(_find(root, "queries.jsonl"))
    return _judged(root, split, corpus, queries, qrels_path, all_queries)


def _qrels_path(root: Path, split: str) -> Path:
    qrels_dir = root / "qrels"
    try:
        return _find(qrels_dir, f"{split}.tsv")
    except DataError:
        have = sorted(p.name.split(".")[0] for p in qrels_dir.glob("*.tsv*"))
        raise DataError(f"{root}: no qrels for split {split!r}; available: {have}") from None


def _judged(
    root: Path,
    split: str,
    corpus: list[Document],
    queries: list[Query],
    qrels_path: Path,
    all_queries: bool,
    files: Path | None = None,
) -> Dataset:
    qrels = read_beir_qrels(qrels_path)
    ids = {d.id for d in corpus} | {parent_of(d) for d in corpus}  # chunks' parents are judged
    warnings = _check_references(qrels, ids, {q.id for q in queries})
    for w in warnings:
        logger.warning("%s: %s", root.name, w)
    known = {q.id for q in queries}
    qrels = {q: v for q, v in qrels.items() if q in known}
    if not all_queries:
        queries = [q for q in queries if q.id in qrels]
    return Dataset(root.name, root, split, corpus, queries, qrels, warnings, files)


def is_folder_corpus(path: str | os.PathLike[str]) -> bool:
    """A folder with ``docs/`` and no ``corpus.jsonl[.gz]``: a folder-of-files corpus."""
    root = Path(path)
    beir = any((root / n).exists() for n in ("corpus.jsonl", "corpus.jsonl.gz"))
    return (root / "docs").is_dir() and not beir


def load_folder(
    path: str | os.PathLike[str], split: str = "test", all_queries: bool = False
) -> Dataset:
    """Load a folder-of-files corpus: ``docs/`` (any files ``rag index`` reads, in subfolders
    too), ``queries.jsonl`` and ``qrels/<split>.tsv`` whose corpus ids are the files' paths
    relative to ``docs/``. Files that cannot be read are skipped with a warning, as by
    ``rag index``; ``corpus`` holds the whole files (``rag eval`` chunks them when it indexes).

    >>> ds = load_folder("../shared/datasets/scifact-reports")    # doctest: +SKIP
    >>> ds.corpus[0].id, ds.files.name                            # doctest: +SKIP
    ('report-0001.md', 'docs')
    """
    from rag.ingest import load_paths

    root = Path(path)
    docs_dir = root / "docs"
    if not docs_dir.is_dir():
        raise DataError(
            f"{root}: no docs/ folder; a folder corpus holds docs/, queries.jsonl and qrels/"
        )
    qrels_path = _qrels_path(root, split)
    queries = read_queries(_find(root, "queries.jsonl"))
    loaded = load_paths([docs_dir], warn=lambda line: logger.warning("%s: %s", root.name, line))
    if not loaded.documents:
        raise DataError(f"{docs_dir}: no readable files")
    return _judged(root, split, loaded.documents, queries, qrels_path, all_queries, docs_dir)


def load_dataset(
    path: str | os.PathLike[str], split: str = "test", all_queries: bool = False
) -> Dataset:
    """A BEIR-layout folder (:func:`load_beir`) or a folder of files (:func:`load_folder`)."""
    loader = load_folder if is_folder_corpus(path) else load_beir
    return loader(path, split=split, all_queries=all_queries)


def _check_references(
    qrels: dict[str, dict[str, int]], doc_ids: set[str], query_ids: set[str]
) -> list[str]:
    warnings = []
    bad_q = [q for q in qrels if q not in query_ids]
    if bad_q:
        warnings.append(
            f"{len(bad_q)} judged query ids are not in the queries file and are dropped "
            f"(e.g. {bad_q[0]!r})"
        )
    bad_d = sorted({d for v in qrels.values() for d in v if d not in doc_ids})
    if bad_d:
        warnings.append(
            f"{len(bad_d)} judged document ids are not in the corpus (e.g. {bad_d[0]!r}); "
            "they stay in the qrels and count in the ideal ranking, as in trec_eval"
        )
    return warnings
