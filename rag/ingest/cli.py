"""The ``rag index`` options for files and folders; the loading logic lives in
:mod:`rag.ingest.indexing`, the command only parses and prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_index_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("more", nargs="*", default=[], help="more files or folders to index")
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only files matching GLOB (path relative to the folder, or file name)",
    )
    p.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="skip files matching GLOB"
    )
    p.add_argument("--strict", action="store_true", help="a bad file is an error, not a warning")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="tokens per chunk (default: the encoder's max_length)",
    )
    p.add_argument(
        "--chunk-overlap", type=int, default=None, help="tokens of overlap (min(32, size / 4))"
    )
    p.add_argument(
        "--chunk-records",
        action="store_true",
        help="also split JSONL/CSV records longer than a chunk",
    )
    p.add_argument(
        "--chunker",
        default=None,
        metavar="CONFIG",
        help="a chunker config (.yaml/.json with type: chunker) instead of the chunk options",
    )
    p.add_argument(
        "--situate",
        action="store_true",
        help="an LLM writes a situating sentence per chunk (cached by content hash; slow on CPU)",
    )
    p.add_argument("--situate-model", default="smollm2-135m", help="the model for --situate")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes that embed each batch (dense/hybrid); one writer commits in order",
    )
    p.add_argument(
        "--csv-columns", default=None, help="CSV column mapping: text=COL[,COL];id=COL;title=COL"
    )
    g = p.add_argument_group('a Ray cluster (pip install "ragnodes[ray]"; docs/scaling.md)')
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="ray: load and chunk in Ray tasks, embed in a Ray actor pool, write here (files and "
        "JSONL are read as files, with the file cursor)",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        help="the cluster's head, host:port (None: $RAY_ADDRESS, else a local Ray)",
    )
    g.add_argument(
        "--ray-workers", type=int, default=None, help="embed actors (None: one per cluster CPU)"
    )
    g.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per embed actor")
    g.add_argument("--ray-embed-batch", type=int, default=64, help="chunks per embed call")


def wants_ingest(args: argparse.Namespace) -> bool:
    """The file/folder path: anything but one JSONL corpus with no ingestion option (whose
    behaviour, ids and all, stays as it was); ``--engine ray`` always takes it."""
    paths = [args.corpus, *getattr(args, "more", [])]
    if getattr(args, "engine", "local") == "ray":
        return True
    if len(paths) > 1 or Path(paths[0]).is_dir():
        return True
    legacy = paths[0].endswith((".jsonl", ".jsonl.gz", ".json"))
    opts = (
        args.include,
        args.exclude,
        args.strict,
        args.chunk_size,
        args.chunk_overlap,
        args.chunk_records,
        args.csv_columns,
        args.chunker,
        args.situate,
    )
    return not legacy or any(opts)


def new_pipeline(args: argparse.Namespace, build_retriever: Any) -> Any:
    from rag.ingest.context import ChunkContext
    from rag.nodes import Node
    from rag.pipeline import Pipeline

    if args.config:
        return Pipeline.of(
            Node.from_config(args.config), max_source_chars=4000, context=ChunkContext()
        )
    if getattr(args, "preset", None):  # files are chunked with the preset's retriever
        from rag.presets import load_preset

        return Pipeline(
            retriever=load_preset(args.preset), max_source_chars=4000, context=ChunkContext()
        )
    return Pipeline(
        retriever=build_retriever(args.retriever), max_source_chars=4000, context=ChunkContext()
    )


def run_index(args: argparse.Namespace, build_retriever: Any) -> int:
    from rag.errors import ConfigError
    from rag.ingest.contextual import Situator
    from rag.ingest.indexing import DEFAULT_BATCH, IngestSettings, index_paths
    from rag.ingest.loaders import CsvColumns
    from rag.ingest.progress import IndexProgress
    from rag.ingest.splitter import Chunker
    from rag.nodes import Node

    chunker = Node.from_config(args.chunker) if args.chunker else None
    if chunker is not None and not isinstance(chunker, Chunker):
        raise ConfigError(f"--chunker {args.chunker!r} is a {chunker.name}, not a chunker")

    settings = IngestSettings(
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        strict=args.strict,
        chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap,
        chunk_records=args.chunk_records,
        csv_columns=CsvColumns.parse(args.csv_columns) if args.csv_columns else None,
        chunker=chunker,
        batch_size=DEFAULT_BATCH if args.batch_size is None else args.batch_size,
        warn=lambda line: print(f"warning: {line}", file=sys.stderr),
    )
    paths = [args.corpus, *args.more]
    make = lambda: new_pipeline(args, build_retriever)  # noqa: E731
    if getattr(args, "engine", "local") == "ray":
        from rag.ingest.ray_engine import RaySettings, index_paths_ray

        if args.situate:
            raise ConfigError(
                "--situate runs an LLM per chunk here; it is not offered with "
                "--engine ray (drop one of them)"
            )
        cluster = RaySettings(
            address=args.ray_address,
            workers=args.ray_workers,
            gpus=args.ray_gpus,
            embed_batch=args.ray_embed_batch,
        )
        report = index_paths_ray(paths, args.out, make, settings, cluster)
    else:
        report = index_paths(
            paths,
            args.out,
            make,
            settings,
            situator=Situator(args.situate_model) if args.situate else None,
            workers=args.workers,
            monitor=IndexProgress(),  # a bar on a terminal, else a line every few seconds
        )
    for line in report.lines():
        print(line)
    print(f"index: {args.out}")
    return 0


def print_citation(c: Any, title: str) -> str:
    """One ``Sources:`` line: locator, title, support verdict."""
    tag = "" if c.source == "generated" else f" ({c.source})"
    where = c.locator if c.path else f"{c.document_id}: {title}"
    verdict = ""
    if c.supported is False:
        verdict = f"  [UNSUPPORTED: {c.judge} judge support {c.support:.2f}]"
    return f"  [{c.marker}] {where}{tag}{verdict}"
