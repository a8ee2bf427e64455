"""``rag eval``: evaluate one or more configured systems, or existing runs, on a judged collection.

    rag eval --dataset ../shared/datasets/scifact --config bm25.json --compare dense.json \\
             --measures ndcg@10,r@100,rr@10 --out results/scifact
    rag eval --dataset ../shared/datasets/scifact-reports --config hybrid.yaml --out results/r
    rag eval --dataset ../shared/datasets/scifact --run mine.trec --out results/mine

``--dataset`` is a BEIR-layout folder, a folder-of-files corpus (``docs/``, ``queries.jsonl``,
``qrels/``: indexed as ``rag index docs/`` would, scored per file) or a public BEIR name
(downloaded to ``--data-dir``, md5-checked). Each config file (JSON or YAML: a node config as
written by ``to_config()``, or a pipeline ``{retriever, rerankers, chunker, name}``; see
:mod:`evals.systems`) is indexed once on the corpus and evaluated; ``--chunk`` chunks a BEIR
corpus and scores its documents through the ``parents`` node. ``--run`` scores TREC run files as
they are. The first system is the baseline of the significance tests. ``--out`` receives
``results.json``, ``report.md``, ``report.html`` and one TREC run per system and stage (with its
config beside).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from evals.compare import compare_systems
from evals.compression import Units, scifact_rationale_units, sentence_units
from evals.datasets import Dataset, load_beir, load_dataset
from evals.download import BEIR_MD5, download_beir
from evals.harness import EvalResult, evaluate, score_run_file
from evals.measures import accepted_names, parse_measures
from evals.report import to_json, to_markdown
from evals.systems import load_system, prepare, slug
from evals.trec import read_run, read_run_config, write_run
from rag.core.errors import ConfigError, RagError
from rag.index.persist import atomic_write_text

logger = logging.getLogger("ragnodes.evals")
DEFAULT_MEASURES = "ndcg@10,r@100,rr@10,ap@100,p@10"


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` on the ``rag`` CLI's subparsers; returns the sub-parser."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate systems on a judged collection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_eval_arguments(p)
    p.set_defaults(func=run_eval)
    return p


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", required=True, help="BEIR-layout folder, folder-of-files corpus or BEIR name"
    )
    p.add_argument("--config", default=None, help="node/pipeline config (.json/.yaml)")
    p.add_argument("--compare", nargs="*", default=[], help="more configs to compare")
    p.add_argument(
        "--run",
        nargs="+",
        default=[],
        metavar="FILE.trec",
        help="score existing TREC run files (named by file stem), after the configs",
    )
    p.add_argument(
        "--chunk",
        action="store_true",
        help="chunk a BEIR corpus (rag index's default chunker unless a config names one) and "
        "score documents by their best chunk (the parents node)",
    )
    p.add_argument("--measures", default=DEFAULT_MEASURES, help=f"accepted: {accepted_names()}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--k", type=int, default=100, help="ranking depth (default 100)")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--test", choices=("randomization", "t"), default="randomization")
    p.add_argument("--correction", choices=("holm", "bonferroni", "none"), default="holm")
    p.add_argument(
        "--content-units",
        choices=("none", "sentences", "rationales"),
        default="none",
        help="score content survival per stage: every sentence of relevant docs, or "
        "SciFact rationales (evidence.jsonl)",
    )
    p.add_argument("--data-dir", default=str(Path.home() / ".cache" / "ragnodes" / "beir"))
    p.add_argument("--no-html", action="store_true", help="skip the HTML report")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--embed-cache",
        default=str(Path.home() / ".cache" / "ragnodes" / "embeddings"),
        help="embedding cache folder: configs sharing an encoder embed the corpus once",
    )
    p.add_argument("--no-embed-cache", action="store_true", help="embed every corpus afresh")


def resolve_dataset(spec: str, split: str, data_dir: str) -> Dataset:
    path = Path(spec)
    if path.is_dir():
        return load_dataset(path, split=split)
    if spec in BEIR_MD5:
        return load_beir(download_beir(spec, data_dir), split=split)
    raise ConfigError(
        f"--dataset {spec!r} is neither a folder nor a BEIR name ({', '.join(sorted(BEIR_MD5))})"
    )


def _units(kind: str, ds: Dataset) -> Units | None:
    if kind == "sentences":
        return sentence_units(ds)
    if kind == "rationales":
        return scifact_rationale_units(ds.path, ds.split)
    return None


_slug = slug


def evaluate_configs(args: argparse.Namespace) -> tuple[list[EvalResult], Dataset]:
    import tempfile

    measures = parse_measures(args.measures)
    configs = [args.config, *args.compare] if args.config else list(args.compare)
    runs = list(getattr(args, "run", []) or [])
    if not configs and not runs:
        raise ConfigError("nothing to evaluate: pass --config FILE and/or --run FILE.trec")
    chunk = bool(getattr(args, "chunk", False))
    ds = resolve_dataset(args.dataset, args.split, args.data_dir)
    systems = [load_system(cfg, chunk=chunk) for cfg in configs]  # all checked before indexing
    names = [s.name for s in systems] + [slug(Path(r).name.split(".")[0]) for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"systems need distinct names (file stem or 'name:'), got {names}")
    units = _units(args.content_units, ds)
    from rag.core import embed_cache

    embed_cache.set_default(None if args.no_embed_cache else args.embed_cache)
    results = []
    args.encoder_notes = []
    for system, name in zip(systems, names):
        before = dict(embed_cache.STATS)
        with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
            runnable, index_s = prepare(system, ds, Path(tmp), progress=not args.no_progress)
            res = evaluate(
                runnable,
                ds,
                measures,
                k=args.k,
                batch_size=args.batch_size,
                progress=not args.no_progress,
                text_units=units,
                name=name,
                index_s=index_s,
            )
            close = getattr(runnable, "close", None)
            if callable(close):
                close()
        config = {**(res.config or {}), **system.eval_keys()}  # what ran, with its eval keys
        results.append(res.model_copy(update={"config": config}))
        args.encoder_notes.append(_encoder_note(name, res.config, before, embed_cache.STATS))
        logger.info(args.encoder_notes[-1])
    for path, name in zip(runs, names[len(systems) :]):
        run = read_run(path)
        results.append(score_run_file(run, ds, measures, name, config=read_run_config(path)))
    return results, ds


def _encoders(cfg: Any) -> list[str]:
    """``model (precision)`` of every encoder node in a config, depth first."""
    found: list[str] = []
    if isinstance(cfg, dict):
        if cfg.get("kind") == "encoder" or str(cfg.get("type", "")).endswith("encoder"):
            if "precision" in cfg:
                found.append(f"{cfg.get('model')} ({cfg['precision']})")
        for v in cfg.values():
            found.extend(_encoders(v))
    elif isinstance(cfg, list):
        for v in cfg:
            found.extend(_encoders(v))
    return found


def _encoder_note(name: str, cfg: Any, before: dict[str, int], after: dict[str, int]) -> str:
    encs = ", ".join(dict.fromkeys(_encoders(cfg))) or "none"
    embedded = after["misses"] - before["misses"]
    cached = after["hits"] - before["hits"]
    return f"{name}: encoders {encs}; documents embedded {embedded}, from cache {cached}"


def write_outputs(results: list[EvalResult], args: argparse.Namespace) -> str:
    out = Path(args.out)
    comparisons = []
    if len(results) > 1:
        comparisons = compare_systems(
            {r.system: r.per_query for r in results},
            results[0].system,
            test=args.test,
            correction=args.correction,
        )
    for r in results:
        for stage, run in r.runs.items():
            write_run(
                run, out / "runs" / f"{r.system}.{_slug(stage)}.trec", tag=r.system, config=r.config
            )
    md = to_markdown(results, comparisons)
    notes = getattr(args, "encoder_notes", None)
    if notes:  # the precision path each system ran and what the embedding cache saved
        md = md.rstrip("\n") + "\n\n### Encoders\n\n" + "".join(f"- {n}\n" for n in notes)
    atomic_write_text(out / "results.json", to_json(results, comparisons))
    atomic_write_text(out / "report.md", md)
    if not args.no_html:
        from evals.html import to_html

        atomic_write_text(out / "report.html", to_html(results, comparisons))
    return md


def run_eval(args: argparse.Namespace) -> int:
    """Entry point for ``rag eval``; returns the exit status."""
    try:
        if args.k < 1 or args.batch_size < 1:
            raise ConfigError(f"--k and --batch-size must be >= 1, got {args.k}, {args.batch_size}")
        results, _ = evaluate_configs(args)
        md = write_outputs(results, args)
    except RagError as e:
        print(f"rag eval: error: {e}", file=sys.stderr)
        return 2
    print(md)
    print(f"wrote {args.out}/results.json, report.md" + ("" if args.no_html else ", report.html"))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m evals.cli ...``: the same command without the ``rag`` front end."""
    parser = argparse.ArgumentParser(
        prog="rag eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_eval_arguments(parser)
    return run_eval(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
