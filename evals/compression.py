"""How much judged-relevant content survives a stage: the compression side of per-stage evals.

A *text unit* is a piece of a relevant document that a faithful context must keep: a rationale
sentence (SciFact's evidence annotations) or, lacking those, each sentence of every relevant
document. A unit survives a ranking when its document is still there and the document's
(possibly shortened) text still contains the unit, whitespace-normalised.

``units``: ``qid -> docid -> [unit text, ...]``. The denominator is every unit of the query, so the
fraction can only fall from stage to stage: retrieval loses the documents it missed, a compressor
loses the sentences it cut.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from evals.datasets import Dataset, iter_jsonl
from rag.core.errors import DataError
from rag.core.types import Ranking

Units = Mapping[str, Mapping[str, Sequence[str]]]
_WS = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


class Survival(BaseModel):
    """Fraction of relevant text units that survive, per query and averaged over queries."""

    model_config = ConfigDict(frozen=True)
    mean: float
    per_query: dict[str, float]
    n_units: int
    n_queries_without_units: int


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def content_survival(rankings: Sequence[Ranking], units: Units) -> Survival:
    """Score each ranking by the share of its query's units still present in its documents."""
    per: dict[str, float] = {}
    n_units = 0
    without = 0
    for r in rankings:
        q_units = units.get(r.query.id, {})
        total = sum(len(v) for v in q_units.values())
        if total == 0:
            without += 1
            continue
        n_units += total
        texts = {h.id: _norm(h.document.text) for h in r.hits}
        kept = sum(
            1
            for doc_id, pieces in q_units.items()
            if doc_id in texts
            for u in pieces
            if _norm(u) in texts[doc_id]
        )
        per[r.query.id] = kept / total
    mean = sum(per.values()) / len(per) if per else 0.0
    return Survival(mean=mean, per_query=per, n_units=n_units, n_queries_without_units=without)


def sentence_units(dataset: Dataset, rel_level: int = 1) -> dict[str, dict[str, list[str]]]:
    """Every sentence (a simple ``. ! ?`` split) of every relevant document, per query."""
    docs = {d.id: d for d in dataset.corpus}
    out: dict[str, dict[str, list[str]]] = {}
    for qid, judged in dataset.qrels.items():
        for doc_id, rel in judged.items():
            if rel >= rel_level and doc_id in docs:
                pieces = [s for s in _SENTENCE_END.split(docs[doc_id].text) if s.strip()]
                out.setdefault(qid, {})[doc_id] = pieces
    return out


def scifact_rationale_units(
    path: str | os.PathLike[str], split: str = "test"
) -> dict[str, dict[str, list[str]]]:
    """SciFact's rationale sentences (``evidence.jsonl`` + ``sentences.jsonl``) per query."""
    root = Path(path)
    sentences: dict[str, list[str]] = {}
    for lineno, row in iter_jsonl(root / "sentences.jsonl"):
        if "_id" not in row or not isinstance(row.get("sentences"), list):
            raise DataError(f"{root / 'sentences.jsonl'}:{lineno}: need '_id' and 'sentences'")
        sentences[str(row["_id"])] = row["sentences"]
    out: dict[str, dict[str, list[str]]] = {}
    ev_path = root / "evidence.jsonl"
    for lineno, row in iter_jsonl(ev_path):
        if row.get("split") != split:
            continue
        qid, doc_id = str(row.get("query-id")), str(row.get("corpus-id"))
        if doc_id not in sentences:
            raise DataError(f"{ev_path}:{lineno}: corpus-id {doc_id!r} has no sentences")
        doc_sents = sentences[doc_id]
        try:
            pieces = [doc_sents[i] for i in row.get("sentences", [])]
        except (IndexError, TypeError):
            raise DataError(f"{ev_path}:{lineno}: sentence index out of range") from None
        have = out.setdefault(qid, {}).setdefault(doc_id, [])
        have.extend(p for p in pieces if p not in have)
    return out
