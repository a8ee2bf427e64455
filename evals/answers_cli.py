"""``rag eval-synth`` and ``rag eval-answers``: siblings of ``rag eval``.

    rag eval-synth --dataset ../shared/datasets/scifact --out synth/scifact --n-docs 100 \\
                   --config bm25.json --compare dense.json

generates a synthetic BEIR test set in ``--out`` (:mod:`evals.synthetic`; resumable: rerun the
same command) and, when configs are given, evaluates them on it exactly like ``rag eval``
(``--out/report``: ``results.json``, ``report.md``, ``report.html``).

    rag eval-answers --answers answers.jsonl --out results/answers \\
                     [--judge smollm2-135m|lexical] [--references refs.jsonl] \\
                     [--labels labels.jsonl]

scores answers (one :class:`rag.types.Answer` JSON object a line) with :mod:`evals.answers` and
writes ``answers.json``, ``answers.md`` and ``answers.html``. ``refs.jsonl`` lines are
``{"query-id", "answers": [...]}``; ``labels.jsonl`` lines are human labels
``{"query-id", "faithfulness": 0|1, ...}``, which calibrate the judge (agreement and PPI CIs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, DataError, RagError
from rag.persist import atomic_write_text, iter_jsonl


def add_answer_parsers(subparsers: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    s = subparsers.add_parser("eval-synth", help="generate a synthetic test set (and evaluate)",
                              description=__doc__, formatter_class=fmt)
    add_synth_arguments(s)
    s.set_defaults(func=run_synth)
    a = subparsers.add_parser("eval-answers", help="answer-level evaluation with judges",
                              description=__doc__, formatter_class=fmt)
    add_answers_arguments(a)
    a.set_defaults(func=run_answers)


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    from evals.cli import DEFAULT_MEASURES

    p.add_argument(
        "--dataset", required=True, help="BEIR folder (its corpus is used) or a .jsonl corpus"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--n-docs", type=int, default=100, help="documents to write questions for")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--roundtrip-k", type=int, default=5, help="BM25 round-trip depth (0 = off)")
    p.add_argument("--dedup", type=float, default=0.8, help="Jaccard threshold of duplicates")
    p.add_argument("--graded", action="store_true", help="add a generated grade-1 passage")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--config", help="evaluate this system on the synthetic set")
    p.add_argument("--compare", nargs="*", default=[])
    p.add_argument("--measures", default=DEFAULT_MEASURES)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--no-html", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def add_answers_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--answers", required=True, help="JSONL of rag.types.Answer objects")
    p.add_argument("--out", required=True)
    p.add_argument("--judge", default="smollm2-135m", help="'lexical', 'none' or an LLM name")
    p.add_argument("--references", help="JSONL {query-id, answers: [...]}")
    p.add_argument("--labels", help="JSONL {query-id, <metric>: human 0/1 ...}")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--system", default="system")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-html", action="store_true")


def run_synth(args: argparse.Namespace) -> int:
    from evals.cli import add_eval_arguments, evaluate_configs, write_outputs
    from evals.synthetic import SynthConfig, generate_synthetic
    from rag.llm import get_llm
    from retrievers import BM25Retriever

    try:
        corpus = read_corpus_any(args.dataset)
        cfg = SynthConfig(n_docs=args.n_docs, seed=args.seed, roundtrip_k=args.roundtrip_k,
                          dedup_threshold=args.dedup, graded=args.graded)
        bm25 = BM25Retriever().index(corpus) if cfg.roundtrip_k else None
        lm = get_llm(args.backend, args.model, args.device).load()
        rep = generate_synthetic(corpus, lm, args.out, cfg, retriever=bm25,
                                 generator_name=args.model, progress=not args.no_progress)
        print(f"synthetic set: {rep.kept} questions kept of {rep.sampled} sampled "
              f"(invalid {rep.invalid}, round-trip failed {rep.roundtrip_failed}, "
              f"duplicates {rep.duplicates}) -> {args.out}")
        if args.config and rep.kept == 0:
            raise ConfigError("no synthetic question survived the filters; nothing to evaluate")
        if args.config:
            # every `rag eval` option at its default, so a new one cannot be missing here
            ep = argparse.ArgumentParser(add_help=False)
            add_eval_arguments(ep)
            ns = ep.parse_args(["--dataset", args.out, "--out", str(Path(args.out) / "report")])
            for key in ("config", "compare", "k", "measures", "no_progress", "no_html"):
                setattr(ns, key, getattr(args, key))
            results, _ = evaluate_configs(ns)
            print(write_outputs(results, ns))
    except RagError as e:
        print(f"rag eval-synth: error: {e}", file=sys.stderr)
        return 2
    return 0


def read_corpus_any(spec: str) -> list[Any]:
    """Documents of a BEIR folder (``corpus.jsonl[.gz]``, qrels not needed) or a JSONL file."""
    from evals.datasets import _find, read_corpus
    from rag.persist import read_documents

    path = Path(spec)
    if path.is_dir():
        return read_corpus(_find(path, "corpus.jsonl"))
    if path.is_file():
        return read_documents(path)
    raise ConfigError(f"--dataset {spec!r} is neither a folder nor a file")


def read_answers(path: str) -> list[Any]:
    from pydantic import ValidationError

    from rag.types import Answer

    out = []
    for lineno, row in iter_jsonl(path):
        try:
            out.append(Answer.model_validate(row))
        except ValidationError as e:
            raise DataError(f"{path}:{lineno}: not an Answer: {e.errors()[0]['msg']}") from None
    return out


def _by_query(path: str | None, key: str | None = None) -> dict[str, Any]:
    if not path:
        return {}
    out: dict[str, Any] = {}
    for lineno, row in iter_jsonl(path):
        if "query-id" not in row:
            raise DataError(f"{path}:{lineno}: missing field 'query-id'")
        qid = str(row.pop("query-id"))
        out[qid] = row[key] if key else row
    return out


def make_judge(name: str, device: str = "auto") -> Any:
    from rag.judges import LexicalJudge, LLMJudge

    if name == "none":
        return None
    if name == "lexical":
        return LexicalJudge()
    return LLMJudge(name, device=device)


def run_answers(args: argparse.Namespace) -> int:
    from evals.answer_report import build_report, to_html, to_json, to_markdown
    from evals.answers import answer_metrics

    try:
        if not 0 < args.threshold < 1:
            raise ConfigError(f"--threshold must be in (0, 1), got {args.threshold}")
        answers = read_answers(args.answers)
        if not answers:
            raise DataError(f"{args.answers}: no answers")
        judge = make_judge(args.judge, args.device)
        refs = _by_query(args.references, "answers")
        per_query = answer_metrics(answers, judge, refs, args.threshold)
        report = build_report(per_query, _by_query(args.labels), args.system,
                              Path(args.answers).name, judge.name if judge else None,
                              args.threshold)
        out = Path(args.out)
        md = to_markdown(report)
        atomic_write_text(out / "answers.json", to_json(report))
        atomic_write_text(out / "answers.md", md)
        if not args.no_html:
            atomic_write_text(out / "answers.html", to_html(report))
    except RagError as e:
        print(f"rag eval-answers: error: {e}", file=sys.stderr)
        return 2
    print(md)
    return 0
