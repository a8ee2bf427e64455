"""p-MRR: does a retriever follow a changed instruction? (FollowIR, Weller et al. 2024; MTEB).

A query is run twice: with its original instruction and with an altered one under which some
documents that were relevant stop being relevant (the *changed* documents). For each changed
document with 1-based rank ``r_og`` in the original run and ``r_new`` in the altered run:

    p = r_new / r_og - 1     if r_og >= r_new   (it rose or stayed: in [-1, 0], 0 when unmoved)
    p = 1 - r_og / r_new     otherwise          (it fell, as it should: in (0, 1))

This is FollowIR's ``MRR_og / MRR_new - 1`` resp. ``1 - MRR_new / MRR_og`` with ``MRR = 1/r``, and
MTEB's ``rank_score``. p-MRR averages ``p`` over a query's changed documents, then over queries;
it lies in [-1, 1]; +1 is perfect instruction following, 0 an unchanged ranking, -1 the opposite.
Worked examples: rank 1 -> 3 gives ``1 - 1/3 = 0.667``; rank 4 -> 2 gives ``2/4 - 1 = -0.5``.

Ranks follow MTEB's ``get_rank_from_dict``: position in the run sorted by score descending
(ties here by document id ascending, so ranks are deterministic), starting at 1; a document
missing from a run gets rank ``len(run) + 1``. A query absent from either run is skipped and
listed in :attr:`PMRR.skipped` (MTEB logs a warning and skips it).

>>> p_mrr_pair(1, 3), p_mrr_pair(4, 2), p_mrr_pair(5, 5)
(0.6666666666666667, -0.5, 0.0)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from rag.core.errors import ConfigError, DataError
from rag.core.nodes import check_k
from rag.core.types import Document, Query

Run = Mapping[str, Mapping[str, float]]


class PMRR(BaseModel):
    """p-MRR over queries (``mean``), per query, and the pairs it was computed from."""

    model_config = ConfigDict(frozen=True)
    mean: float
    per_query: dict[str, float]
    n_pairs: int
    skipped: list[str] = []


def p_mrr_pair(r_og: int, r_new: int) -> float:
    """The pairwise score of one changed document (ranks start at 1)."""
    if r_og < 1 or r_new < 1:
        raise ConfigError(f"ranks start at 1, got r_og={r_og}, r_new={r_new}")
    if r_og >= r_new:
        return r_new / r_og - 1.0
    return 1.0 - r_og / r_new


def _ranks(scores: Mapping[str, float]) -> dict[str, int]:
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return {doc: i for i, (doc, _) in enumerate(ordered, 1)}


def changed_documents(
    qrels_og: Mapping[str, Mapping[str, int]], qrels_changed: Mapping[str, Mapping[str, int]]
) -> dict[str, list[str]]:
    """Per query, the documents relevant (> 0) under the original instruction that are not
    relevant (absent or <= 0) under the altered one; queries with none are left out."""
    out: dict[str, list[str]] = {}
    for qid, docs in qrels_og.items():
        new = qrels_changed.get(qid, {})
        changed = sorted(d for d, rel in docs.items() if rel > 0 and new.get(d, 0) <= 0)
        if changed:
            out[qid] = changed
    return out


def p_mrr(run_og: Run, run_new: Run, changed: Mapping[str, Iterable[str]]) -> PMRR:
    """p-MRR of two runs (``qid -> docid -> score``) over ``changed`` (``qid -> [docid]``).

    Both runs are keyed by the same query id (FollowIR's ``qid-og`` / ``qid-changed`` pairs)."""
    per_query: dict[str, float] = {}
    skipped: list[str] = []
    n_pairs = 0
    for qid, docs in changed.items():
        docs = list(docs)
        if not docs:
            continue
        if qid not in run_og or qid not in run_new:
            skipped.append(qid)
            continue
        og, new = run_og[qid], run_new[qid]
        r_og, r_new = _ranks(og), _ranks(new)
        scores = [p_mrr_pair(r_og.get(d, len(og) + 1), r_new.get(d, len(new) + 1)) for d in docs]
        per_query[qid] = sum(scores) / len(scores)
        n_pairs += len(scores)
    if not per_query:
        raise ConfigError(
            f"no query of the {len(changed)} with changed documents is in both runs "
            f"(e.g. {next(iter(changed), None)!r})"
        )
    mean = sum(per_query.values()) / len(per_query)
    return PMRR(mean=mean, per_query=per_query, n_pairs=n_pairs, skipped=skipped)


# -- paired evaluation --------------------------------------------------------------------------
@dataclass(frozen=True)
class InstructionPairs:
    """Queries run twice: ``original_queries[i]`` and ``altered_queries[i]`` are the same question
    under the original and the altered instruction. Both qrels are keyed by the original id."""

    name: str
    corpus: list[Document]
    original_queries: list[Query]
    altered_queries: list[Query]
    qrels_og: dict[str, dict[str, int]]
    qrels_changed: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)
    #: FollowIR's ``top_ranked``: per original query id, the candidates a reranker reorders
    candidates: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        n_changed = sum(
            len(v) for v in changed_documents(self.qrels_og, self.qrels_changed).values()
        )
        return (
            f"{self.name}: {len(self.corpus)} docs, {len(self.original_queries)} query pairs, "
            f"{n_changed} changed documents"
        )


class InstructionEval(BaseModel):
    """nDCG@10 under the original instruction (``ndcg10_og``, mean over ``qrels_og``'s queries,
    a query without hits scoring 0), under the altered one where it has relevant documents
    (``ndcg10_changed``, ``None`` when no query has any), and p-MRR."""

    model_config = ConfigDict(frozen=True)
    ndcg10_og: float
    ndcg10_changed: float | None
    p_mrr: PMRR
    n_queries: int
    k: int


def evaluate_instruction_pairs(
    system: Any,
    original_queries: Sequence[Query],
    altered_queries: Sequence[Query],
    qrels_og: Mapping[str, Mapping[str, int]],
    qrels_changed: Mapping[str, Mapping[str, int]],
    k: int = 100,
    candidates: Mapping[str, Sequence[str]] | None = None,
    corpus: Sequence[Document] | None = None,
) -> InstructionEval:
    """Run ``system.retrieve_batch`` on both query lists, ``k`` deep, and score nDCG@10 and p-MRR.

    With ``candidates`` (FollowIR's ``top_ranked``, keyed by original query id) and the
    ``corpus``, ``system`` is a reranker instead: ``system.rerank_batch`` reorders each query's
    candidates under both instructions, as FollowIR evaluates rerankers.

    A changed document outside a run's top ``k`` gets rank ``len(run) + 1`` (``k + 1`` for a full
    run), so deeper ``k`` resolves more movement; FollowIR reranks 1000 candidates.

    >>> res = evaluate_instruction_pairs(bm25, probe.original_queries, probe.altered_queries,
    ...                                  probe.qrels_og, probe.qrels_changed)  # doctest: +SKIP
    """
    from evals.measures import nDCG, score_run
    from evals.runs import run_from_rankings

    check_k(k)
    if len(original_queries) != len(altered_queries):
        raise ConfigError(
            f"got {len(original_queries)} original and {len(altered_queries)} altered queries; "
            "they must be aligned pairs"
        )
    ids = [q.id for q in original_queries]
    if len(set(ids)) != len(ids):
        raise ConfigError("original query ids must be unique (they key both qrels)")
    if candidates is None:
        og = system.retrieve_batch(list(original_queries), k)
        new = system.retrieve_batch(list(altered_queries), k)
    else:
        og = _rerank_candidates(system, original_queries, original_queries, candidates, corpus, k)
        new = _rerank_candidates(system, altered_queries, original_queries, candidates, corpus, k)
    # key the altered run by the original id, as both qrels are
    new = [r.model_copy(update={"query": q}) for r, q in zip(new, original_queries)]
    run_og, run_new = run_from_rankings(og), run_from_rankings(new)
    judged_og = {q: dict(v) for q, v in qrels_og.items() if q in run_og}
    ndcg = score_run(run_og, judged_og, [nDCG @ 10], missing="zero").mean["nDCG@10"]
    judged_new = {
        q: dict(v)
        for q, v in qrels_changed.items()
        if q in run_new and any(x > 0 for x in v.values())
    }
    ndcg_new = (
        score_run(run_new, judged_new, [nDCG @ 10], missing="zero").mean["nDCG@10"]
        if judged_new
        else None
    )
    changed = changed_documents(judged_og, qrels_changed)
    return InstructionEval(
        ndcg10_og=ndcg,
        ndcg10_changed=ndcg_new,
        p_mrr=p_mrr(run_og, run_new, changed),
        n_queries=len(ids),
        k=k,
    )


def _rerank_candidates(
    reranker: Any,
    queries: Sequence[Query],
    keys: Sequence[Query],
    candidates: Mapping[str, Sequence[str]],
    corpus: Sequence[Document] | None,
    k: int,
) -> list[Any]:
    """Rankings of each query's candidates (in the given order) reranked by ``reranker``."""
    from rag.core.types import Hit, Ranking

    if corpus is None:
        raise ConfigError("reranking given candidates needs the corpus to read their text")
    docs = {d.id: d for d in corpus}
    rankings = []
    for q, key in zip(queries, keys, strict=True):
        cand = [d for d in candidates.get(key.id, []) if d in docs]
        hits = tuple(Hit(document=docs[d], score=float(len(cand) - i)) for i, d in enumerate(cand))
        rankings.append(Ranking(query=q, hits=hits, stage="candidates"))
    return reranker.rerank_batch(rankings, k=k)


def evaluate_pairs(system: Any, pairs: InstructionPairs, k: int = 100) -> InstructionEval:
    """:func:`evaluate_instruction_pairs` on ``pairs``: a retriever retrieves ``k`` deep; a
    reranker (no ``retrieve_batch``) reorders the pairs' ``candidates`` (FollowIR's protocol)."""
    if hasattr(system, "retrieve_batch"):
        return evaluate_instruction_pairs(
            system, pairs.original_queries, pairs.altered_queries, pairs.qrels_og,
            pairs.qrels_changed, k=k,
        )
    if not pairs.candidates:
        raise ConfigError(
            f"{type(system).__name__} has no retrieve_batch and {pairs.name} has no candidates "
            "(top_ranked) to rerank"
        )
    return evaluate_instruction_pairs(
        system, pairs.original_queries, pairs.altered_queries, pairs.qrels_og,
        pairs.qrels_changed, k=k, candidates=pairs.candidates, corpus=pairs.corpus,
    )


# -- FollowIR data ------------------------------------------------------------------------------
def load_followir(path: str | os.PathLike[str], split: str = "test") -> InstructionPairs:
    """Load a FollowIR set (Robust04 / News21 / Core17 instructions) exported to files.

    Expected layout (the configs of the Hugging Face ``jhu-clsp/*-instructions`` sets)::

        <root>/corpus.jsonl         {"_id", "title"?, "text"}
        <root>/queries.jsonl        {"_id", "text" (or "query"), "instruction_og",
                                     "instruction_changed"}
        <root>/qrels/og.tsv         "query-id<TAB>corpus-id<TAB>score", judged under instruction_og
        <root>/qrels/changed.tsv    the same, under instruction_changed
        <root>/top_ranked.jsonl     optional: {"qid", "pid"} rows, the candidates to rerank

    MTEB's local layout, ``qrels_og/<split>.tsv`` and ``qrels_changed/<split>.tsv``, is read too,
    and ``.jsonl.gz`` / ``.tsv.gz`` work. The altered query keeps the id with ``-changed`` added.
    Only queries judged under the original instruction are kept, as MTEB does. Nothing is
    downloaded: fetch the set yourself (e.g. with ``datasets``) and write these files, or write
    any :class:`InstructionPairs` with :func:`write_followir`.
    """
    from evals.datasets import _find, iter_jsonl, read_beir_qrels, read_corpus

    root = Path(path)
    if not root.is_dir():
        raise DataError(
            f"FollowIR folder {str(root)!r} does not exist; expected corpus.jsonl, queries.jsonl, "
            "qrels/og.tsv and qrels/changed.tsv there (see evals.pmrr.load_followir)"
        )
    corpus = read_corpus(_find(root, "corpus.jsonl"))
    if (root / "qrels").is_dir():
        qrels_og = read_beir_qrels(_find(root / "qrels", "og.tsv"))
        qrels_changed = read_beir_qrels(_find(root / "qrels", "changed.tsv"))
    else:
        qrels_og = read_beir_qrels(_find(root / "qrels_og", f"{split}.tsv"))
        qrels_changed = read_beir_qrels(_find(root / "qrels_changed", f"{split}.tsv"))
    qpath = _find(root, "queries.jsonl")
    originals, altered = [], []
    for lineno, row in iter_jsonl(qpath):
        missing = [
            key for key in ("_id", "instruction_og", "instruction_changed") if key not in row
        ]
        text = row.get("text", row.get("query"))
        if missing or not isinstance(text, str):
            raise DataError(
                f"{qpath}:{lineno}: needs _id, text, instruction_og, "
                f"instruction_changed; missing {missing or ['text']}"
            )
        qid = str(row["_id"])
        if qid not in qrels_og:
            continue
        originals.append(Query(id=qid, text=text, instruction=row["instruction_og"]))
        altered.append(
            Query(id=f"{qid}-changed", text=text, instruction=row["instruction_changed"])
        )
    candidates: dict[str, list[str]] = {}
    for top in (root / "top_ranked.jsonl", root / "top_ranked.jsonl.gz"):
        if top.exists():
            for lineno, row in iter_jsonl(top):
                if "qid" not in row or "pid" not in row:
                    raise DataError(f"{top}:{lineno}: needs qid and pid")
                candidates.setdefault(str(row["qid"]), []).append(str(row["pid"]))
            break
    return InstructionPairs(
        root.name, corpus, originals, altered, qrels_og, qrels_changed, candidates=candidates
    )


def write_followir(pairs: InstructionPairs, path: str | os.PathLike[str]) -> Path:
    """Write ``pairs`` in the layout :func:`load_followir` reads (e.g. to run the SciFact stance
    probe with another toolkit's FollowIR loader)."""
    import json

    from rag.index.persist import atomic_write_text

    def lines(rows: Iterable[Any]) -> str:
        return "".join(json.dumps(r) + "\n" for r in rows)

    root = Path(path)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        root / "corpus.jsonl",
        lines({"_id": d.id, "title": d.title, "text": d.text} for d in pairs.corpus),
    )
    atomic_write_text(root / "queries.jsonl", lines(
        {"_id": og.id, "text": og.text, "instruction_og": og.instruction,
         "instruction_changed": new.instruction}
        for og, new in zip(pairs.original_queries, pairs.altered_queries, strict=True)
    ))
    for name, qrels in (("og", pairs.qrels_og), ("changed", pairs.qrels_changed)):
        rows = "".join(f"{q}\t{d}\t{g}\n" for q, docs in qrels.items() for d, g in docs.items())
        atomic_write_text(root / "qrels" / f"{name}.tsv", "query-id\tcorpus-id\tscore\n" + rows)
    if pairs.candidates:
        atomic_write_text(root / "top_ranked.jsonl", lines(
            {"qid": q, "pid": d} for q, ds in pairs.candidates.items() for d in ds
        ))
    return root
