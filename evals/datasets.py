"""BEIR-layout collections: load from disk (``.jsonl`` or ``.jsonl.gz``), or download a public one.

Layout (BEIR's ``GenericDataLoader``)::

    <root>/corpus.jsonl[.gz]    {"_id", "title"?, "text", ...}
    <root>/queries.jsonl[.gz]   {"_id", "text", ...}
    <root>/qrels/<split>.tsv    header "query-id<TAB>corpus-id<TAB>score", integer scores

Bad lines raise :class:`~rag.errors.DataError` naming file and line. Judgments that point at a
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

from rag.errors import DataError
from rag.persist import iter_jsonl
from rag.types import Document, Query

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
    qrels_dir = root / "qrels"
    try:
        qrels_path = _find(qrels_dir, f"{split}.tsv")
    except DataError:
        have = sorted(p.name.split(".")[0] for p in qrels_dir.glob("*.tsv*"))
        raise DataError(f"{root}: no qrels for split {split!r}; available: {have}") from None
    corpus = read_corpus(_find(root, "corpus.jsonl"))
    queries = read_queries(_find(root, "queries.jsonl"))
    qrels = read_beir_qrels(qrels_path)
    warnings = _check_references(qrels, {d.id for d in corpus}, {q.id for q in queries})
    for w in warnings:
        logger.warning("%s: %s", root.name, w)
    known = {q.id for q in queries}
    qrels = {q: v for q, v in qrels.items() if q in known}
    if not all_queries:
        queries = [q for q in queries if q.id in qrels]
    return Dataset(root.name, root, split, corpus, queries, qrels, warnings)


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
