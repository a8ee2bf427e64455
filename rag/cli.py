"""The ``rag`` command: index, search, ask, demo, chat, eval.

Errors raised on purpose (:class:`rag.errors.RagError`) print one line to stderr and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from rag.demo import RETRIEVERS, build_retriever, demo_corpus_path  # noqa: F401  (re-exported)
from rag.errors import ConfigError, RagError

USER_PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
DEMO_QUESTION = "Which planet is the largest in the Solar System?"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragnodes")
    except PackageNotFoundError:
        return "unknown (not installed)"


def cmd_index(args: argparse.Namespace) -> int:
    """``rag index``; a run that fails before it committed any document removes the folder it
    created (a rerun then needs no ``--overwrite``)."""
    out = args.out if not args.repair and not args.delete else None
    created = out is not None and not os.path.exists(out)
    try:
        return _index(args)
    except BaseException:
        if created and out is not None and not _holds_documents(out):
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise


def _holds_documents(path: str) -> bool:
    from rag.index import IndexFolder

    try:
        body = IndexFolder(path).read_manifest()
    except RagError:
        return False
    segs = (body or {}).get("docs", {}).get("segments", [])
    return any(s["n"] > len(s["deleted"]) for s in segs)


def _index(args: argparse.Namespace) -> int:
    from rag.ingest.cli import run_index, wants_ingest
    from rag.ingest.indexing import (
        RECORD_BATCH,
        count_overlong,
        delete,
        index_records,
        repair,
        source_key,
    )
    from rag.nodes import Node
    from rag.persist import read_documents
    from rag.pipeline import Pipeline

    if args.repair:  # rebuild a damaged index from its intact document segments
        repair(args.repair)
        return 0
    if args.out is None:
        raise ConfigError("--out is required: the index folder")
    if args.delete:
        n = delete(args.out, args.delete)
        print(f"deleted {n} of {len(args.delete)} ids from {args.out}")
        return 0
    if not args.corpus:
        raise ConfigError(
            "give files, folders or a JSONL corpus to index (or --delete ID / --repair INDEX)"
        )
    if args.config and getattr(args, "preset", None):
        raise ConfigError("pass either --config or --preset, not both")
    if wants_ingest(args):  # files, folders, globs: rag/ingest
        return run_index(args, build_retriever)
    if getattr(args, "workers", 1) != 1:
        raise ConfigError(
            "--workers applies to files and folders (rag index PATH...); a JSONL corpus is "
            "embedded in one process: drop --workers"
        )
    docs = read_documents(args.corpus)

    def make() -> Any:
        if args.config:
            return Pipeline.of(Node.from_config(args.config))
        if getattr(args, "preset", None):
            from rag.presets import load_preset

            return Pipeline(retriever=load_preset(args.preset))
        return Pipeline(retriever=build_retriever(args.retriever))

    pipe = index_records(
        args.out, docs, make, source_key([args.corpus]), append=args.append,
        overwrite=args.overwrite,
        batch_size=RECORD_BATCH if args.batch_size is None else args.batch_size,
    )
    pipe.close()
    print(f"indexed {len(docs)} documents with {pipe.retriever.name} into {args.out}")
    over, max_len = count_overlong(pipe.retriever, docs)
    if max_len is not None:
        print(f"{over} of {len(docs)} documents are longer than the encoder's max_length "
              f"({max_len} tokens) and were truncated when embedded")
    return 0


def _open(path: str) -> Any:
    from rag.pipeline import Pipeline

    return Pipeline.open(path)


def _query(args: argparse.Namespace) -> Any:
    from rag.types import Query

    if not args.query or not args.query.strip():
        raise ConfigError("the query is empty; pass a question in quotes")
    return Query(text=args.query, instruction=args.instruction)


def _filter(args: argparse.Namespace) -> Any:
    """``--filter JSON`` (or ``@file.json``) parsed by the one filter parser (:mod:`rag.filters`);
    a bad filter is one line and exit 2."""
    text = getattr(args, "filter", None)
    if text is None:
        return None
    from rag.filters import parse_filter

    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"--filter is not JSON ({e.msg} at column {e.colno}); e.g. --filter "
            "'{\"lang\": {\"$in\": [\"en\", \"de\"]}}' (docs/filters.md)"
        ) from None
    return parse_filter(value)


def cmd_search(args: argparse.Namespace) -> int:
    flt = _filter(args)
    pipe = _open(args.index)
    if args.group:  # documents, not chunks: rank each parent by its chunks
        from retrievers.parents import ParentRetriever

        pipe.retriever = ParentRetriever(pipe.retriever, how=args.group, depth=args.group_depth)
    ranking = pipe.search(_query(args), k=args.k, filter=flt)
    if args.json:
        from rag.citations import locate

        print(
            json.dumps(
                [
                    {"id": h.id, "score": h.score, "title": h.document.title, **locate(h.document)}
                    for h in ranking.hits
                ]
            )
        )
        return 0
    for rank, h in enumerate(ranking.hits, 1):
        print(f"{rank:>3}. {h.score:8.4f}  {h.id}  {h.document.title or h.document.text[:60]}")
    return 0


def _print_answer(answer: Any, streamed: bool) -> None:
    if not streamed:
        print(answer.text)
    print()
    if answer.citations:
        print("Sources:")
        by_id = {h.id: h for h in answer.contexts}
        from rag.ingest.cli import print_citation

        for c in answer.citations:
            d = by_id[c.document_id].document
            print(print_citation(c, d.title or d.text[:60]))
    else:
        print("(no citation could be matched to the sources)")
    if answer.invalid_markers:
        print(f"  ignored markers that point at no source: {list(answer.invalid_markers)}")


def cmd_ask(args: argparse.Namespace, pipe: Any = None) -> int:
    from rag.generators import TransformersGenerator
    from rag.types import Answer

    flt = _filter(args)
    pipe = pipe if pipe is not None else _open(args.index)
    if pipe.generator is None:
        pipe.generator = TransformersGenerator(model=args.model, max_new_tokens=args.max_new_tokens)
    pipe.k = args.k
    if getattr(pipe, "context", None) is None:  # fit the prompt to the window, check citations
        from rag.ingest.context import ChunkContext

        pipe.context = ChunkContext(neighbours=0)
    answer = None
    for item in pipe.ask_stream(_query(args), filter=flt):
        if isinstance(item, Answer):
            answer = item
        elif not args.json:
            print(item, end="", flush=True)
    if args.json:
        print(answer.model_dump_json(indent=2))  # type: ignore[union-attr]
    else:
        print()
        _print_answer(answer, streamed=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rag.persist import read_documents
    from rag.pipeline import Pipeline

    out = args.out or os.path.join(tempfile.gettempdir(), "ragnodes-demo-index")
    docs = read_documents(demo_corpus_path())
    pipe = Pipeline(retriever=build_retriever("hybrid"))
    pipe.index(docs).save(out)
    print(
        f"indexed the packaged demo corpus ({len(docs)} astronomy notes) into {out} (BM25 + MiniLM)"
    )
    print(f"Q: {args.query}\nA: ", end="", flush=True)
    return cmd_ask(args, pipe=Pipeline.open(out))


def _add_query_args(p: argparse.ArgumentParser, k: int) -> None:
    p.add_argument("-k", type=int, default=k, help="number of hits / contexts")
    p.add_argument("--instruction", default=None, help="what counts as relevant (optional)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--filter",
        default=None,
        metavar="JSON",
        help='metadata filter, e.g. \'{"lang": {"$in": ["en", "de"]}}\' or @file.json '
        "(docs/filters.md; `rag config schema filter`)",
    )


def _add_gen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m", help="generator: short name, HF id or path")
    p.add_argument("--max-new-tokens", type=int, default=160)


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's help shows its defaults (subparsers inherit the class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="rag", description="ragnodes: composable RAG nodes")
    ap.add_argument("--version", action="version", version=f"ragnodes {_version()}")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "index", help="index files, folders or a JSONL corpus into an index folder"
    )
    p.add_argument(
        "corpus",
        nargs="?",
        help='a file or folder (.md .txt .html .pdf .docx .csv), or JSONL {"_id", "text"}',
    )
    p.add_argument("--out", help="index folder")
    p.add_argument("--retriever", choices=RETRIEVERS, default="hybrid")
    p.add_argument("--config", help="a retriever or pipeline config (.json/.yaml) instead")
    p.add_argument("--append", action="store_true", help="add to the index at --out")
    p.add_argument("--overwrite", action="store_true", help="replace the index at --out")
    p.add_argument("--delete", action="append", metavar="ID", help="delete this id (repeatable)")
    p.add_argument("--repair", metavar="INDEX", help="rebuild INDEX from its intact documents")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="documents per commit (10,000; for files: chunks per commit, 2,000); a killed run "
        "resumes after its last commit",
    )
    from rag.ingest.cli import add_index_args

    add_index_args(p)  # files, folders, globs, chunking (rag/ingest)
    p.add_argument(
        "--preset", help="a packaged retriever preset instead: fast | quality (docs/quality.md)"
    )
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("search", help="search an index")
    p.add_argument("index")
    p.add_argument("query")
    _add_query_args(p, 10)
    p.add_argument(
        "--group",
        choices=("max", "sum", "rrf"),
        default=None,
        help="rank the chunks' parent documents (files) instead of chunks, by their best chunk "
        "(max), the sum of their chunks' scores, or RRF",
    )
    p.add_argument(
        "--group-depth", type=int, default=None, help="chunks grouped (default max(10k, 100))"
    )
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("ask", help="answer a question with citations")
    p.add_argument("index")
    p.add_argument("query")
    _add_query_args(p, 3)
    _add_gen_args(p)
    p.set_defaults(func=cmd_ask)
    p = sub.add_parser("demo", help="index the packaged corpus and answer a question, offline")
    p.add_argument("query", nargs="?", default=DEMO_QUESTION)
    p.add_argument("--out", default=None, help="index folder (default: a temp folder)")
    _add_query_args(p, 3)
    _add_gen_args(p)
    p.set_defaults(func=cmd_demo)
    from rag.integrations.cli import add_serving_parsers

    add_serving_parsers(sub)  # `rag serve` (HTTP) and `rag mcp` (MCP over stdio)
    from rag.chat_cli import add_chat_parser

    add_chat_parser(sub)
    from rag.config_cli import add_config_parser

    add_config_parser(sub)  # `rag config validate FILE`, `rag config schema [TYPE]`
    from rag.completion import add_completion_parser

    add_completion_parser(sub, build_parser)  # `rag completion bash|zsh`
    try:
        from evals.answers_cli import add_answer_parsers
        from evals.cli import add_eval_parser
    except ImportError:
        pass
    else:
        add_eval_parser(sub)
        add_answer_parsers(sub)  # the siblings ``rag eval-synth`` and ``rag eval-answers``
    return ap


def main(argv: list[str] | None = None) -> int:
    # model-loading progress bars would interleave with streamed answers on the terminal
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "k", 1) is not None and getattr(args, "k", 1) < 1:
            print(f"error: k must be >= 1, got {args.k}", file=sys.stderr)
            return 2
        return int(args.func(args))
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rag ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except USER_PATH_ERRORS as e:  # a path the user named: one line, not a traceback
        print(f"error: {e.strerror}: {e.filename!r}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
