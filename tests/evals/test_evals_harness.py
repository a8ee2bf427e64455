"""The harness on real small collections: retrieval systems, staged pipelines, latency,
content survival (SciFact rationales), reports and the ``rag eval`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import SHARED

from evals.compression import content_survival, scifact_rationale_units, sentence_units
from evals.datasets import load_beir
from evals.harness import EvalResult, evaluate
from evals.measures import RR, R, nDCG, score_run
from evals.trec import read_run, read_run_config
from rag.core.errors import ConfigError
from rag.core.types import Document, Hit, Query, Ranking

DATA = SHARED  # ../shared/datasets, or $RAGNODES_DATASETS
pytestmark = pytest.mark.skipif(not (DATA / "adi").is_dir(), reason="shared datasets absent")
retrievers = pytest.importorskip("retrievers")


class FirstSentence:
    """A tiny pipeline: BM25, then a 'compressor' that keeps each document's first sentence."""

    name = "bm25+first-sentence"

    def __init__(self, corpus: list[Document]) -> None:
        self.bm25 = retrievers.BM25Retriever().index(corpus)

    def run_stages(self, queries: Sequence[Query], k: int) -> dict[str, list[Ranking]]:
        first = self.bm25.retrieve_batch(queries, k)
        cut = []
        for r in first:
            hits = []
            for h in r.hits[:5]:
                text = h.document.text.split(". ")[0]
                meta = {
                    **h.document.metadata,
                    "compression": len(text) / max(1, len(h.document.text)),
                }
                doc = h.document.model_copy(update={"text": text, "metadata": meta})
                hits.append(Hit(document=doc, score=h.score))
            cut.append(Ranking(query=r.query, hits=tuple(hits), stage="first_sentence"))
        return {"bm25": first, "first_sentence": cut}


@pytest.fixture(scope="module")
def adi():
    return load_beir(DATA / "adi")


def test_evaluate_retriever(adi) -> None:
    res = evaluate(
        retrievers.BM25Retriever(),
        adi,
        ["ndcg@10", R @ 100],
        k=100,
        index=True,
        progress=False,
        batch_size=8,
    )
    assert isinstance(res, EvalResult)
    assert res.final_stage == "retrieval" and res.n_queries == 35
    assert res.aggregate["nDCG@10"] == pytest.approx(0.4802, abs=1e-4)
    # adi has 82 documents, but BM25 ranks only those sharing a term with the query
    assert 0.9 < res.aggregate["R@100"] < 1.0
    assert set(res.per_query["nDCG@10"]) == {q.id for q in adi.queries}
    assert 0 < res.latency.p50_ms <= res.latency.p95_ms and res.latency.qps > 0
    assert res.config == retrievers.BM25Retriever().to_config()
    # the result's numbers are score_run's on the kept run
    again = score_run(res.runs["retrieval"], adi.qrels, [nDCG @ 10])
    assert again.mean["nDCG@10"] == res.aggregate["nDCG@10"]
    assert "runs" not in json.loads(res.model_dump_json())


def test_per_stage_and_survival(adi) -> None:
    units = sentence_units(adi)
    res = evaluate(
        FirstSentence(adi.corpus), adi, [nDCG @ 10, RR @ 10], k=20, progress=False, text_units=units
    )
    assert list(res.stages) == ["bm25", "first_sentence"]
    first, cut = res.stages["bm25"], res.stages["first_sentence"]
    assert cut.aggregate["nDCG@10"] <= first.aggregate["nDCG@10"]  # top 5 kept of 20
    assert cut.aggregate["RR@10"] <= first.aggregate["RR@10"]
    assert first.survival is not None and cut.survival is not None
    assert 0 < cut.survival < first.survival <= 1


def test_scifact_rationales_survive_retrieval_not_compression() -> None:
    path = DATA / "scifact"
    units = scifact_rationale_units(path)
    assert len(units) == 188  # test queries with a rationale (datasets/README.md)
    ds = load_beir(path)
    docs = {d.id: d for d in ds.corpus}
    qid = next(iter(units))
    full = Ranking(
        query=Query(id=qid, text="x"),
        hits=tuple(Hit(document=docs[d], score=1.0) for d in units[qid]),
    )
    assert content_survival([full], units).mean == 1.0
    emptied = Ranking(
        query=full.query,
        hits=tuple(
            Hit(document=h.document.model_copy(update={"text": ""}), score=1.0) for h in full.hits
        ),
    )
    assert content_survival([emptied], units).mean == 0.0


def test_bad_systems_and_arguments(adi) -> None:
    with pytest.raises(ConfigError, match="retrieve_batch"):
        evaluate(object(), adi, ["ndcg@10"], progress=False)
    with pytest.raises(ConfigError, match="k must be >= 1"):
        evaluate(retrievers.BM25Retriever(), adi, ["ndcg@10"], k=0, progress=False)
    with pytest.raises(ConfigError, match="unknown measure"):
        evaluate(retrievers.BM25Retriever(), adi, ["bleu"], progress=False)


def _cli(tmp_path: Path, *extra: str) -> Path:
    from evals.cli import main

    bm25 = tmp_path / "bm25.json"
    bm25.write_text(json.dumps(retrievers.BM25Retriever().to_config()))
    text_only = tmp_path / "bm25_text.json"
    text_only.write_text(json.dumps(retrievers.BM25Retriever(fields="text").to_config()))
    out = tmp_path / "out"
    code = main(
        [
            "--dataset",
            str(DATA / "adi"),
            "--config",
            str(bm25),
            "--compare",
            str(text_only),
            "--measures",
            "ndcg@10,rr@10,p@5",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )
    assert code == 0
    return out


def test_cli_writes_json_markdown_html_and_runs(tmp_path: Path, capsys) -> None:
    out = _cli(tmp_path)
    printed = capsys.readouterr().out
    assert "| bm25 |" in printed and "### Significance" in printed
    data = json.loads((out / "results.json").read_text())
    assert [r["system"] for r in data["results"]] == ["bm25", "bm25_text"]
    assert data["results"][0]["stages"]["retrieval"]["aggregate"]["nDCG@10"] == pytest.approx(
        0.4802, abs=1e-4
    )
    assert len(data["comparisons"]) == 3
    run_path = out / "runs" / "bm25.retrieval.trec"
    assert len(read_run(run_path)) == 35
    assert read_run_config(run_path)["type"] == "bm25"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "http" not in html.split("<body>")[1]
    assert (out / "report.md").read_text().startswith("## adi (test)")


def test_cli_errors_are_clear(tmp_path: Path, capsys) -> None:
    from evals.cli import main

    code = main(["--dataset", "no-such-set", "--config", "x.json", "--out", str(tmp_path)])
    assert code == 2
    assert "neither a folder nor a BEIR name" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("matplotlib.image")
    out = _cli(tmp_path, "--no-progress")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1000,2400",
            (out / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[0] >= 2000
    # plots are there: many distinct colours and a good share of non-white pixels
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.05


def test_project_pipeline_is_a_staged_system(adi) -> None:
    pipeline = pytest.importorskip("rag.pipeline")
    pipe = pipeline.Pipeline(retriever=retrievers.BM25Retriever(), k=20)
    res = evaluate(pipe, adi, [nDCG @ 10], k=20, index=True, progress=False)
    assert list(res.stages) == ["retrieve"]
    assert res.aggregate["nDCG@10"] == pytest.approx(0.4802, abs=1e-4)
