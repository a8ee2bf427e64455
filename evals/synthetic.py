"""Synthetic test sets for any corpus: a generator writes one question per sampled document, the
source document is its positive, and two filters keep the questions worth keeping.

Steps (seeded, resumable, with a progress bar):

1. sample ``n_docs`` documents (``numpy`` permutation with ``seed``; documents shorter than
   ``min_doc_chars`` are skipped);
2. the generator answers template ``synth_question`` for each; the reply is cleaned to its first
   question (:func:`clean_question`: first line, leading "Question:"/numbering removed, length
   bounds). Each raw reply is appended to ``generated.jsonl`` as soon as it exists, so a run that
   stops resumes where it stopped;
3. round-trip filter (Promptagator, Dai et al. 2023; InPars, Bonifacio et al. 2022): a retriever
   indexed on the corpus must rank the source document within its top ``roundtrip_k``;
4. deduplication: a question whose content-token Jaccard similarity to a kept question is at least
   ``dedup_threshold`` is dropped (so is an exact repeat);
5. optional graded relevance ("Beyond Contrastive Learning", LLM-generated documents at several
   relevance levels): the generator writes a passage on the question's topic that does not answer
   it (template ``synth_related_passage``), added to the corpus with grade 1; the source has
   grade 2.

The result is a BEIR folder (``corpus.jsonl``, ``queries.jsonl`` with per-query provenance in
``metadata``, ``qrels/test.tsv``) plus ``manifest.json`` (configuration, generator, prompt
versions, and how many questions each filter removed), readable by :func:`evals.load_beir`.

>>> cfg = SynthConfig(n_docs=100, seed=0, roundtrip_k=5)
>>> generate_synthetic(corpus, generator, "out/synth", cfg, retriever=bm25)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import prompts
from rag.core.errors import ConfigError, DataError
from rag.core.types import Document, Query
from rag.index.persist import atomic_write_text, iter_jsonl
from rag.pipeline.judges import content_tokens

_PREFIX = re.compile(r"^\s*(?:question\s*\d*\s*[:.)-]|q\s*\d*\s*[:.)-]|\d+\s*[.)]|[-*])\s*", re.I)


class TextGenerator(Protocol):
    """Greedy completion of chat prompts (``rag.core.llm.TransformersLLM`` satisfies it)."""

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]: ...


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one synthetic-set run (stored in ``manifest.json``)."""

    n_docs: int = 100
    seed: int = 0
    roundtrip_k: int = 5
    dedup_threshold: float = 0.8
    min_words: int = 4
    max_words: int = 40
    min_doc_chars: int = 200
    max_passage_chars: int = 700
    max_new_tokens: int = 40
    min_content_tokens: int = 3
    batch_size: int = 4
    graded: bool = False

    def __post_init__(self) -> None:
        for name in ("n_docs", "batch_size", "max_new_tokens", "min_words"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.roundtrip_k < 0:
            raise ConfigError(f"roundtrip_k must be >= 0 (0 = no filter), got {self.roundtrip_k}")
        if not 0 < self.dedup_threshold <= 1:
            raise ConfigError(f"dedup_threshold must be in (0, 1], got {self.dedup_threshold}")
        if self.max_words < self.min_words:
            raise ConfigError(f"max_words {self.max_words} < min_words {self.min_words}")


@dataclass
class SynthReport:
    """Counts per step; ``kept`` questions are written."""

    sampled: int = 0
    generated: int = 0
    resumed: int = 0
    invalid: int = 0
    roundtrip_failed: int = 0
    duplicates: int = 0
    kept: int = 0
    out: str = ""
    notes: list[str] = field(default_factory=list)


def clean_question(
    text: str, min_words: int = 4, max_words: int = 40, min_content_tokens: int = 3
) -> str | None:
    """The first question in a generator reply, or ``None`` when there is none usable: it must
    end with "?", have ``min_words..max_words`` words and at least ``min_content_tokens``
    content words (this drops generic replies such as "What is the answer to this question?").

    >>> clean_question("Question: Which enzyme does aspirin inhibit?\\nIt is COX.")
    'Which enzyme does aspirin inhibit?'
    """
    for line in text.strip().splitlines():
        line = _PREFIX.sub("", line.strip()).strip().strip('"').strip()
        if not line:
            continue
        if "?" in line:
            line = line[: line.index("?") + 1]
        words = line.split()
        if not min_words <= len(words) <= max_words or not line.endswith("?"):
            return None
        if len(set(content_tokens(line))) < min_content_tokens:
            return None
        return line
    return None


def jaccard(a: str, b: str) -> float:
    sa, sb = set(content_tokens(a)), set(content_tokens(b))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


class Deduplicator:
    """Keeps a question unless its content-token Jaccard to a kept one reaches ``threshold``."""

    def __init__(self, threshold: float = 0.8) -> None:
        self.threshold = threshold
        self.kept: list[str] = []

    def add(self, question: str) -> bool:
        if any(jaccard(question, k) >= self.threshold for k in self.kept):
            return False
        self.kept.append(question)
        return True


def sample_documents(
    corpus: Sequence[Document], n: int, seed: int, min_chars: int = 200
) -> list[Document]:
    """``n`` documents in a seeded random order, skipping those shorter than ``min_chars``."""
    order = np.random.default_rng(seed).permutation(len(corpus))
    picked = [corpus[i] for i in order if len(corpus[i].full_text) >= min_chars]
    if not picked:
        raise DataError(f"no document has at least {min_chars} characters")
    return picked[:n]


def roundtrip_rank(retriever: Any, question: str, source: str, k: int) -> int | None:
    """1-based rank of ``source`` in the retriever's top ``k`` for ``question``, else ``None``."""
    ids = retriever.retrieve(Query(id="rt", text=question), k=k).ids
    return ids.index(source) + 1 if source in ids else None


def _load_done(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    return {str(row["doc"]): row for _, row in iter_jsonl(path)}


def _generate_missing(
    docs: list[Document], generator: TextGenerator, cfg: SynthConfig, log: Path, progress: bool
) -> dict[str, dict[str, Any]]:
    """Raw replies for every sampled doc, reusing and appending to ``generated.jsonl``."""
    from tqdm.auto import tqdm

    done = _load_done(log)
    todo = [d for d in docs if d.id not in done]
    bar = tqdm(total=len(docs), initial=len(docs) - len(todo), desc="synth", disable=not progress)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as f:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            texts = [
                prompts.render("synth_question", passage=d.full_text[: cfg.max_passage_chars])
                for d in batch
            ]
            replies = generator.generate(texts, cfg.max_new_tokens)
            for d, raw in zip(batch, replies, strict=True):
                row = {"doc": d.id, "raw": raw}
                done[d.id] = row
                f.write(json.dumps(row) + "\n")
            f.flush()
            bar.update(len(batch))
    bar.close()
    return done


def filter_questions(
    docs: list[Document],
    raw: dict[str, dict[str, Any]],
    cfg: SynthConfig,
    retriever: Any | None,
    report: SynthReport,
) -> list[dict[str, Any]]:
    """Apply cleaning, round-trip and dedup in sample order; returns the kept records."""
    dedup = Deduplicator(cfg.dedup_threshold)
    kept = []
    for d in docs:
        q = clean_question(raw[d.id]["raw"], cfg.min_words, cfg.max_words, cfg.min_content_tokens)
        if q is None:
            report.invalid += 1
            continue
        rank = None
        if cfg.roundtrip_k and retriever is not None:
            rank = roundtrip_rank(retriever, q, d.id, cfg.roundtrip_k)
            if rank is None:
                report.roundtrip_failed += 1
                continue
        if not dedup.add(q):
            report.duplicates += 1
            continue
        kept.append({"doc": d.id, "question": q, "raw": raw[d.id]["raw"], "roundtrip_rank": rank})
    return kept


def generate_synthetic(
    corpus: Sequence[Document],
    generator: TextGenerator,
    out_dir: str | Path,
    config: SynthConfig | None = None,
    retriever: Any | None = None,
    generator_name: str = "",
    progress: bool = True,
) -> SynthReport:
    """Generate, filter and write a BEIR-format synthetic test set to ``out_dir``.

    ``retriever`` must already be indexed on ``corpus`` (needed when ``roundtrip_k > 0``).
    """
    cfg = config if config is not None else SynthConfig()
    if cfg.roundtrip_k and retriever is None:
        raise ConfigError("roundtrip_k > 0 needs a retriever indexed on the corpus (or set 0)")
    out = Path(out_dir)
    docs = sample_documents(corpus, cfg.n_docs, cfg.seed, cfg.min_doc_chars)
    report = SynthReport(sampled=len(docs), out=str(out))
    if len(docs) < cfg.n_docs:
        report.notes.append(f"only {len(docs)} documents are long enough (asked {cfg.n_docs})")
    report.resumed = len(set(_load_done(out / "generated.jsonl")) & {d.id for d in docs})
    raw = _generate_missing(docs, generator, cfg, out / "generated.jsonl", progress)
    report.generated = len(docs)
    kept = filter_questions(docs, raw, cfg, retriever, report)
    extra: list[Document] = []
    if cfg.graded and kept:
        texts = [prompts.render("synth_related_passage", question=k["question"]) for k in kept]
        replies: list[str] = []
        for start in range(0, len(texts), cfg.batch_size):
            chunk = texts[start : start + cfg.batch_size]
            replies += generator.generate(chunk, cfg.max_new_tokens * 3)
        for i, (k, text) in enumerate(zip(kept, replies, strict=True)):
            if text.strip():
                k["related_doc"] = f"synth-{i}-related"
                extra.append(Document(id=k["related_doc"], text=text.strip(), title=""))
    report.kept = len(kept)
    _write_beir(out, corpus, extra, kept, cfg, generator_name, report)
    return report


def _write_beir(
    out: Path,
    corpus: Sequence[Document],
    extra: list[Document],
    kept: list[dict[str, Any]],
    cfg: SynthConfig,
    generator_name: str,
    report: SynthReport,
) -> None:
    versions = {"synth_question": prompts.version("synth_question")}
    if cfg.graded:
        versions["synth_related_passage"] = prompts.version("synth_related_passage")
    lines = [json.dumps({"_id": d.id, "title": d.title, "text": d.text}) for d in [*corpus, *extra]]
    atomic_write_text(out / "corpus.jsonl", "\n".join(lines) + "\n")
    queries, qrels = [], ["query-id\tcorpus-id\tscore"]
    for i, k in enumerate(kept):
        qid = f"synth-{i}"
        meta = {
            "source_doc": k["doc"],
            "generator": generator_name,
            "prompts": versions,
            "seed": cfg.seed,
            "raw": k["raw"],
            "roundtrip_rank": k["roundtrip_rank"],
        }
        queries.append(json.dumps({"_id": qid, "text": k["question"], "metadata": meta}))
        qrels.append(f"{qid}\t{k['doc']}\t{2 if cfg.graded else 1}")
        if "related_doc" in k:
            qrels.append(f"{qid}\t{k['related_doc']}\t1")
    atomic_write_text(out / "queries.jsonl", "\n".join(queries) + ("\n" if queries else ""))
    atomic_write_text(out / "qrels" / "test.tsv", "\n".join(qrels) + "\n")
    manifest = {
        "config": asdict(cfg),
        "generator": generator_name,
        "prompts": versions,
        "report": asdict(report),
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2))
