"""``rag eval`` on what users build: folder-of-files corpora, chunked BEIR corpora (``--chunk``),
pre-chunked corpora, eval configs that are pipelines, and existing TREC runs (``--run``).

Tiny corpora are written to ``tmp_path``; the whole scifact-reports run is ``slow``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import SHARED

from rag.core.errors import ConfigError

# a file whose answer sits in its last section: with whole files BM25 would still find it, but
# only chunks show the grouping (ids are files, chunk hits are grouped through ``parents``)
FILLER = " ".join(f"Filler sentence number {i} about nothing in particular." for i in range(40))
FILES = {
    "alpha.md": f"# Alpha\n\n## Intro\n\n{FILLER}\n\n## Penguins\n\nEmperor penguins huddle.\n",
    "beta.md": f"# Beta\n\n## Intro\n\n{FILLER}\n\n## Volcanoes\n\nBasalt lava cools slowly.\n",
    "sub/gamma.md": f"# Gamma\n\n## Rivers\n\nThe delta of a river is fertile.\n\n{FILLER}\n",
}
QUERIES = {"q1": "penguins huddle", "q2": "basalt lava", "q3": "river delta"}
QRELS = {"q1": "alpha.md", "q2": "beta.md", "q3": "sub/gamma.md"}
CHUNKER = {"chunk_size": 64, "chunk_overlap": 8, "contextual": False}
CONFIGS = Path(__file__).resolve().parents[2] / "evals" / "configs"


def _queries_and_qrels(root: Path, qrels: dict[str, str]) -> None:
    (root / "qrels").mkdir(parents=True)
    rows = "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items())
    (root / "queries.jsonl").write_text(rows)
    body = "".join(f"{q}\t{d}\t1\n" for q, d in qrels.items())
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + body)


def folder_corpus(root: Path) -> Path:
    for name, text in FILES.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text)
    _queries_and_qrels(root, QRELS)
    return root


def beir_corpus(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _queries_and_qrels(root, {q: d.split("/")[-1].removesuffix(".md") for q, d in QRELS.items()})
    return root


def beir_rows() -> list[dict]:
    return [
        {"_id": n.split("/")[-1].removesuffix(".md"), "title": "", "text": t}
        for n, t in FILES.items()
    ]


def config(tmp_path: Path, name: str, cfg: dict) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def run_cli(tmp_path: Path, dataset: Path, *args: str) -> dict:
    from evals.cli import main

    out = tmp_path / "out"
    code = main(["--dataset", str(dataset), "--out", str(out), "--no-html", "--no-progress", *args])
    assert code == 0
    return json.loads((out / "results.json").read_text())


def test_folder_corpus_is_chunked_like_rag_index_and_scored_per_file(tmp_path: Path) -> None:
    from evals.datasets import load_dataset
    from evals.trec import read_run
    from rag.core.types import Query
    from rag.ingest import Chunker, load_paths
    from rag.pipeline.parents import group_by_parent
    from retrievers import BM25Retriever

    data = folder_corpus(tmp_path / "set")
    ds = load_dataset(data)
    assert ds.files == data / "docs" and not ds.warnings
    assert sorted(d.id for d in ds.corpus) == sorted(FILES)  # ids: paths under docs/
    cfg = config(tmp_path, "chunky", {"retriever": {"type": "bm25"}, "chunker": CHUNKER})
    res = run_cli(tmp_path, data, "--config", cfg, "--measures", "ndcg@10,rr@10")
    (r,) = res["results"]
    assert r["system"] == "chunky" and r["dataset_warnings"] == []
    assert r["config"]["retriever"]["type"] == "parents"  # a pipeline: its retriever grouped
    assert r["config"]["chunker"]["chunk_size"] == 64
    assert r["stages"]["retrieve"]["aggregate"]["nDCG@10"] == 1.0
    run = read_run(tmp_path / "out" / "runs" / "chunky.retrieve.trec")
    assert set(run["q3"]) <= set(FILES)  # files, never chunks

    # the same figures from the parts, side by side: rag index's loader and the chunker, BM25
    # over the chunks, max grouping
    chunks = Chunker(**CHUNKER).split(load_paths([data / "docs"]).documents)
    assert len(chunks) > len(FILES)  # the filler made every file several chunks
    bm25 = BM25Retriever().index(chunks)
    for qid, text in QUERIES.items():
        want = group_by_parent(bm25.retrieve(Query(id=qid, text=text), k=1000), "max", k=100)
        # the same BM25 arithmetic on the same chunks (one index here, committed segments
        # there, whose statistics are global): equal to float32 rounding of the sums
        assert {h.id: h.score for h in want.hits} == pytest.approx(run[qid], rel=1e-6)


def test_beir_corpus_chunked_on_request_and_named_by_config(tmp_path: Path) -> None:
    data = beir_corpus(tmp_path / "beir", beir_rows())
    plain = config(tmp_path, "plain", {"type": "bm25"})
    chunked = config(
        tmp_path, "chunked", {"type": "bm25", "name": "bm25 chunks", "chunker": CHUNKER}
    )
    res = run_cli(tmp_path, data, "--config", plain, "--compare", chunked)
    whole, parts = res["results"]
    assert [whole["system"], parts["system"]] == ["plain", "bm25_chunks"]
    assert whole["config"]["type"] == "bm25" and "chunker" not in whole["config"]
    assert parts["config"]["type"] == "parents"
    assert parts["stages"]["retrieval"]["aggregate"]["nDCG@10"] == 1.0
    assert parts["latency"]["index_s"] > 0
    # --chunk: every config chunked with rag index's default chunker (MiniLM's 254 tokens)
    res = run_cli(tmp_path, data, "--config", plain, "--chunk")
    (r,) = res["results"]
    assert r["config"]["chunker"] is True and r["config"]["type"] == "parents"
    assert r["dataset_warnings"] == []


def test_pre_chunked_corpus_has_no_missing_document_warning(tmp_path: Path) -> None:
    from evals.datasets import load_dataset
    from evals.harness import evaluate
    from evals.systems import EvalSystem, prepare
    from rag.core.types import Document
    from rag.ingest import Chunker
    from retrievers import BM25Retriever

    docs = [Document(id=r["_id"], text=r["text"]) for r in beir_rows()]
    chunks = Chunker(**CHUNKER).split(docs)
    rows = [{"_id": c.id, "text": c.text, "parent_id": c.metadata["parent_id"]} for c in chunks]
    ds = load_dataset(beir_corpus(tmp_path / "pre", rows))
    assert ds.chunked and ds.warnings == []
    runnable, _ = prepare(EvalSystem("pre", BM25Retriever()), ds, tmp_path, progress=False)
    res = evaluate(runnable, ds, ["ndcg@10"], progress=False, name="pre")
    assert res.aggregate["nDCG@10"] == 1.0 and res.system == "pre"
    assert all("#" not in d for r in res.runs["retrieval"].values() for d in r)


def test_eval_configs_are_checked(tmp_path: Path) -> None:
    from evals.systems import load_system

    with pytest.raises(ConfigError, match="not a retriever or a pipeline"):
        load_system(config(tmp_path, "c", {"type": "chunker"}))
    with pytest.raises(ConfigError, match="'chunker' must be"):
        load_system(config(tmp_path, "c", {"type": "bm25", "chunker": 3}))
    with pytest.raises(ConfigError, match="'name' must be"):
        load_system(config(tmp_path, "c", {"type": "bm25", "name": ""}))
    s = load_system(config(tmp_path, "p", {"retriever": {"type": "bm25"}, "rerankers": []}))
    assert s.node.name == "pipeline" and s.name == "p" and not s.chunk


def test_run_file_scores_equal_pytrec_eval(tmp_path: Path) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from evals.trec import write_run

    data = folder_corpus(tmp_path / "set")
    rng = random.Random(7)
    ids = [*FILES, "other-1.md", "other-2.md", "other-3.md"]
    run = {q: {d: float(rng.choice([0.5, 1.0, 1.5, rng.random()])) for d in ids} for q in QUERIES}
    run.pop("q3")  # a judged query missing from the run scores 0, as trec_eval -c
    write_run(run, tmp_path / "mine.trec", tag="mine")
    res = run_cli(
        tmp_path, data, "--run", str(tmp_path / "mine.trec"), "--measures", "ndcg@10,ap,rr,p@5"
    )
    (r,) = res["results"]
    assert r["system"] == "mine" and r["latency"] is None
    qrels = {q: {d: 1} for q, d in QRELS.items()}
    keys = {"nDCG@10": "ndcg_cut_10", "AP": "map", "RR": "recip_rank", "P@5": "P_5"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, set(keys.values())).evaluate(run)
    for ours, theirs in keys.items():
        per_query = r["stages"]["run"]["per_query"][ours]
        # the same sums in the same order (trec_eval's ranking), so equal to float64 rounding
        for q in run:
            assert per_query[q] == pytest.approx(ref[q][theirs], abs=1e-12)
        assert per_query["q3"] == 0.0


def test_rerank_fusion_builds_its_token_store_at_index_time(tmp_path: Path) -> None:
    from evals.datasets import load_dataset
    from evals.systems import load_system, prepare

    data = folder_corpus(tmp_path / "set")
    cfg = {
        "type": "rerank_fusion",
        "retrievers": [{"type": "bm25"}],
        "rerankers": [{"type": "late_interaction"}],
        "chunker": CHUNKER,
    }
    system = load_system(config(tmp_path, "li", cfg))
    ds = load_dataset(data)
    runnable, _ = prepare(system, ds, tmp_path / "work", progress=False)
    fusion = runnable.retriever  # parents -> rerank_fusion, reopened from the index folder
    (rr,) = fusion.rerankers
    assert rr.token_store is not None and rr.token_store.count() == len(fusion.documents)
    ranking = runnable.retrieve("penguins huddle", k=3)
    assert ranking.ids[0] == "alpha.md"


@pytest.mark.slow
def test_scifact_reports_folder_corpus_reproduces_chunked_bm25(tmp_path: Path) -> None:
    data = SHARED / "scifact-reports"
    if not (data / "docs").is_dir():
        pytest.skip(f"shared dataset scifact-reports not found at {data}")
    cfg = str(CONFIGS / "reports_bm25.yaml")  # {retriever: bm25, chunker: {contextual: false}}
    res = run_cli(tmp_path, data, "--config", cfg, "--measures", "ndcg@10,r@100")
    (r,) = res["results"]
    # docs/ingestion.md, bench/bench_chunking.py --reports 648: chunked BM25, max grouping
    assert r["final_stage"] == "retrieve"  # a pipeline config: its stages' names
    assert round(r["stages"]["retrieve"]["aggregate"]["nDCG@10"], 4) == 0.6759
    assert r["dataset_warnings"] == [] and r["n_queries"] == 300


@pytest.mark.slow
def test_scifact_reports_folder_corpus_reproduces_chunked_hybrid(tmp_path: Path) -> None:
    """~1 h on one loaded core without the embedding cache (9,772 chunks through MiniLM)."""
    data = SHARED / "scifact-reports"
    if not (data / "docs").is_dir():
        pytest.skip(f"shared dataset scifact-reports not found at {data}")
    cfg = str(CONFIGS / "reports_hybrid.yaml")  # the bench's depths: 100 chunks, 100 per child
    res = run_cli(tmp_path, data, "--config", cfg, "--measures", "ndcg@10")
    (r,) = res["results"]
    # bench_chunking.py --fusion-depth 100 re-encoded in fp32 gives 0.7132 (its old 0.7134 came
    # from bf16-era cached vectors; docs/evaluation.md); vectors from other batchings differ by
    # ~1e-7 and gave the same 0.7132 twice; one near-tie swap in one of 300 claims' top 10
    # would move the mean by ~0.0002-0.003, which this tolerance allows
    assert abs(r["stages"]["retrieve"]["aggregate"]["nDCG@10"] - 0.7132) <= 0.003


def test_shipped_eval_configs_load() -> None:
    """``evals/configs/*.yaml`` (docs/evaluation.md's reproduction commands) are valid eval
    configs: named, chunked without headers, the bench-depth hybrid at depth 100 throughout."""
    from evals.systems import load_system

    systems = {p.stem: load_system(p) for p in sorted(CONFIGS.glob("*.yaml"))}
    assert {"reports_bm25", "reports_hybrid", "reports_hybrid_defaults"} <= set(systems)
    for s in systems.values():
        assert s.chunk and s.chunker is not None and s.chunker.contextual is False
    bench = systems["reports_hybrid"].node.retriever
    assert (bench.name, bench.depth, bench.candidate_depth(100)) == ("parents", 100, 100)
    assert bench.retriever.candidate_depth(100) == 100  # the hybrid fuses the top 100 of each
    assert systems["reports_hybrid_defaults"].node.retriever.depth is None


def test_presets_are_eval_configs() -> None:
    from evals.systems import load_system
    from rag.pipeline.presets import load_preset

    quality = load_system("quality")
    assert quality.name == "quality" and quality.chunk and quality.chunker is None
    assert quality.node == load_preset("quality") and quality.node.depth == 1000
    fast = load_system("fast")
    assert fast.node.name == "bm25" and not fast.chunk
