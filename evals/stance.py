"""An instruction-following probe built from SciFact's stance labels (no download needed).

Each test claim of ``scifact/evidence.jsonl`` is asked twice:

* original: ``"Find abstracts with evidence about the claim."``: every rationale document is
  relevant, whatever its label (the SciFact relevance of BEIR's qrels);
* altered: ``"Only abstracts whose evidence contradicts the claim."`` for claims whose evidence
  supports them, ``"Only abstracts whose evidence supports the claim."`` for claims whose
  evidence contradicts them: the documents of the other stance stop being relevant.

In the test split no claim has evidence of both stances (188 claims: 124 with SUPPORT documents
only, 64 with CONTRADICT only; 209 rationale documents), so every altered query has no relevant
document left and every rationale document is a changed document: p-MRR rewards a system that
pushes them down. A system that ignores instructions returns the same ranking twice: p-MRR = 0.

>>> probe = scifact_stance_probe("../shared/datasets/scifact")   # doctest: +SKIP
>>> probe.summary()                                               # doctest: +SKIP
'scifact-stance: 5183 docs, 188 query pairs, 209 changed documents'
"""

from __future__ import annotations

import os
from pathlib import Path

from evals.datasets import _find, iter_jsonl, read_corpus, read_queries
from evals.pmrr import InstructionPairs
from rag.core.errors import DataError
from rag.core.types import Query

ORIGINAL = "Find abstracts with evidence about the claim."
ONLY = {
    "SUPPORT": "Only abstracts whose evidence supports the claim.",
    "CONTRADICT": "Only abstracts whose evidence contradicts the claim.",
}
LABELS = tuple(ONLY)


def _evidence(path: Path, split: str) -> dict[str, dict[str, str]]:
    """``qid -> docid -> label`` of one split; a pair labelled twice must agree."""
    out: dict[str, dict[str, str]] = {}
    for lineno, row in iter_jsonl(path):
        if row.get("split") != split:
            continue
        label = row.get("label")
        if label not in LABELS:
            raise DataError(f"{path}:{lineno}: label must be one of {LABELS}, got {label!r}")
        qid, doc = str(row["query-id"]), str(row["corpus-id"])
        prev = out.setdefault(qid, {}).setdefault(doc, label)
        if prev != label:
            raise DataError(f"{path}:{lineno}: ({qid}, {doc}) labelled {prev} and {label}")
    return out


def scifact_stance_probe(path: str | os.PathLike[str], split: str = "test") -> InstructionPairs:
    """Build the stance probe from a SciFact folder (``corpus.jsonl``, ``queries.jsonl``,
    ``evidence.jsonl``). A claim with evidence of both stances (none in the test split) gets
    the "contradicts" instruction: its SUPPORT documents change, its CONTRADICT ones stay
    relevant; such claims are counted in ``notes``."""
    root = Path(path)
    ev_path = root / "evidence.jsonl"
    if not ev_path.exists():
        raise DataError(f"{root}: no evidence.jsonl; is this the shared SciFact folder?")
    evidence = _evidence(ev_path, split)
    if not evidence:
        raise DataError(f"{ev_path}: no evidence rows in split {split!r}")
    texts = {q.id: q.text for q in read_queries(_find(root, "queries.jsonl"))}
    missing = sorted(set(evidence) - set(texts))
    if missing:
        raise DataError(
            f"{len(missing)} evidence claims are not in queries.jsonl (e.g. {missing[0]!r})"
        )
    originals, altered, notes = [], [], []
    qrels_og: dict[str, dict[str, int]] = {}
    qrels_changed: dict[str, dict[str, int]] = {}
    mixed = 0
    for qid in sorted(evidence, key=lambda q: (len(q), q)):
        docs = evidence[qid]
        stances = set(docs.values())
        keep = "CONTRADICT" if "SUPPORT" in stances else "SUPPORT"
        mixed += len(stances) > 1
        originals.append(Query(id=qid, text=texts[qid], instruction=ORIGINAL))
        altered.append(Query(id=f"{qid}-{keep.lower()}", text=texts[qid], instruction=ONLY[keep]))
        qrels_og[qid] = {d: 1 for d in docs}
        qrels_changed[qid] = {d: 1 for d, label in docs.items() if label == keep}
    if mixed:
        notes.append(f"{mixed} claims have evidence of both stances; their CONTRADICT docs stay")
    corpus = read_corpus(_find(root, "corpus.jsonl"))
    return InstructionPairs(
        f"scifact-stance-{split}", corpus, originals, altered, qrels_og, qrels_changed, notes
    )
