"""Beat RRF(BM25, dense): candidates, settings chosen on training data only, significance.

Prints one JSON object. On the five shared collections' test queries: nDCG@10 and R@100 of BM25,
dense MiniLM, RRF(BM25, dense) (the baseline) and every candidate, with the two-sided paired
randomisation test against the baseline (10,000 sign flips, Holm-corrected over the candidates of
one collection and measure), and the settings each candidate used with the data they were chosen on.

Settings are chosen by leave-one-collection-out (fit on the others, test on the held-out one):
the tuning pool of a held-out set is SciFact's 809 *train* claims plus the test queries of the
classic sets other than the held-out one (adi's queries are cisi's queries 1-35, so adi and cisi
never tune each other); SciFact's test claims are never used to choose anything. The objective is
the macro mean of nDCG@10 over the collections in the pool. The shipped preset is the setting
chosen for SciFact (scifact train + the four classic sets); without SciFact, the setting chosen
on all the given collections (``_ship``), whose per-set figures are then the held-out ones.

Document vectors come from the shared cache (bench cache ``minilm/<set>.npy``, fp32 MiniLM of
``title + " " + text``) and token vectors from ``minilm_tokens`` (``bench/locations.py``) (see
``encode_tokens.py`` there); only queries are encoded here, and fusion runs on the top-100 lists
(the same arithmetic as ``retrievers.fusion``). ``--costs SET`` instead indexes SET from scratch
with each preset's real nodes and reports index time, bytes per document, latency and nDCG@10.

    python bench/bench_quality.py [--datasets adi,med,cisi,cranfield,scifact] [--no-li]
    python bench/bench_quality.py --costs med
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

from locations import DATA, cache

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = DATA
CACHE = cache("minilm").parent
MEASURES = ["nDCG@10", "R@100"]
DEPTH = 100
RM3_GRID = [
    {"fb_docs": d, "fb_terms": t, "original_query_weight": w}
    for d, t, w in itertools.product((5, 10), (10, 20), (0.5, 0.7))
]
PRF_GRID = [{"fb_docs": d, "beta": b} for d, b in itertools.product((3, 5, 10), (0.5, 1.0))]
LEX_WEIGHTS = (0.5, 0.75, 1.0, 1.5)
SIGNALS = ("bm25", "rm3", "dense", "prf", "li")


def token_cache(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(tokens (T, D) float16, offsets (N + 1,), ids)`` of the cached MiniLM token vectors: this
    bench's layout (``minilm_tokens/<set>.*``, fp32 encoder) or a saved ``TokenStore`` folder
    (``kernels/<set>_tokens``, TokenEncoder defaults) that another benchmark wrote."""
    mine = CACHE / "minilm_tokens"
    if (mine / f"{name}.ids.json").exists():
        ids = json.loads((mine / f"{name}.ids.json").read_text())
        tok = np.load(mine / f"{name}.tokens.npy", mmap_mode="r")
        return tok, np.load(mine / f"{name}.offsets.npy"), ids
    store = CACHE / "kernels" / f"{name}_tokens"
    if (store / "store.json").exists():
        ids = json.loads((store / "store.json").read_text())["ids"]
        tok = np.load(store / "tokens.npy", mmap_mode="r")
        return tok, np.load(store / "offsets.npy"), ids
    raise FileNotFoundError(f"no cached token vectors for {name} under {CACHE}")


# -- the signals of one collection ------------------------------------------------------------
class Collection:
    """Top-``DEPTH`` lists of every signal for every query of one collection (test + train)."""

    def __init__(self, name: str, use_li: bool) -> None:
        from evals import load_beir

        self.name = name
        self.test = load_beir(SHARED / name)
        self.train = load_beir(SHARED / name, split="train") if name == "scifact" else None
        self.queries = list(self.test.queries) + (list(self.train.queries) if self.train else [])
        self.use_li = use_li
        self._setup()

    def _setup(self) -> None:
        from rag.encoders import TransformerEncoder
        from retrievers import BM25Retriever, DenseRetriever, ExactStore

        corpus = self.test.corpus
        self.docs = {d.id: d for d in corpus}
        self.bm25 = BM25Retriever().index(corpus)
        self.bm25._build()
        ids = json.loads((CACHE / "minilm" / f"{self.name}.ids.json").read_text())
        vecs = np.load(CACHE / "minilm" / f"{self.name}.npy")
        store = ExactStore()
        store.add(ids, vecs, [{"metadata": self.docs[i].metadata} for i in ids])
        self.dense = DenseRetriever(encoder=TransformerEncoder(precision="fp32"), store=store)
        self.dense._docs = dict(self.docs)
        t = time.perf_counter()
        qv = self.dense.encoder.load().encode([q.text for q in self.queries], kind="query")
        self.qv = np.asarray(qv, dtype=np.float32)
        self.query_encode_s = time.perf_counter() - t
        self.lists: dict[str, dict[str, list[tuple[str, float]]]] = {}
        self._li: dict[str, dict[str, float]] = {}
        self._tf: dict = {}
        if self.use_li:
            self.tok, self.off, ids = token_cache(self.name)
            self.tok_row = {i: j for j, i in enumerate(ids)}
            from retrievers.multivector import TokenEncoder

            self.tenc = TokenEncoder(precision="fp32").load()
            self._qtok: dict[str, np.ndarray] = {}

    def signal(self, key: str) -> dict[str, list[tuple[str, float]]]:
        """``qid -> [(doc id, score)]`` (top ``DEPTH``) of signal ``key`` (cached)."""
        if key in self.lists:
            return self.lists[key]
        kind, _, cfg = key.partition(":")
        params = json.loads(cfg) if cfg else {}
        out: dict[str, list[tuple[str, float]]] = {}
        if kind in ("bm25", "rm3"):
            from retrievers import RM3Retriever
            from retrievers.prf import _top

            r = None
            if kind == "rm3":
                r = RM3Retriever(bm25=self.bm25, **params)
                r._docs, r._tf = dict(self.docs), self._tf  # feedback term counts are shared
            for q in self.queries:
                s = r.scores(q.text) if r is not None else self.bm25.scores(q.text)
                out[q.id] = _top(s, self.bm25._order, DEPTH, None)
        elif kind in ("dense", "prf"):
            from retrievers.prf import rocchio

            qv = self.qv
            if kind == "prf":
                qv = rocchio(qv, self.dense.store, params["fb_docs"], 1.0, params["beta"])
            res = self.dense.store.search(qv, DEPTH)
            out = {q.id: r for q, r in zip(self.queries, res)}
        else:
            raise ValueError(key)
        self.lists[key] = out
        return out

    def li_scores(self, qid: str, text: str, ids: set[str]) -> dict[str, float]:
        """MaxSim of ``ids`` for query ``qid`` (memoised), as LateInteractionReranker scores."""
        from retrievers.kernels.maxsim import maxsim_lists

        memo = self._li.setdefault(qid, {})
        todo = [i for i in ids if i not in memo]
        if todo:
            if qid not in self._qtok:
                self._qtok[qid] = self.tenc.encode_queries([text])[0]
            rows = [self.tok_row[i] for i in todo]
            mats = [
                np.asarray(self.tok[self.off[j] : self.off[j + 1]], dtype=np.float32) for j in rows
            ]
            for i, s in zip(todo, maxsim_lists([self._qtok[qid]], mats)[0]):
                memo[i] = float(s)
        return {i: memo[i] for i in ids}


# -- fusion over plain lists (mirrors retrievers.fusion exactly) ------------------------------
def fuse(
    lists: list[list[tuple[str, float]]], weights: list[float], method: str
) -> dict[str, float]:
    from retrievers.fusion import normalize

    scores: dict[str, float] = {}
    for lst, w in zip(lists, weights):
        if method == "rrf":
            for rank, (i, _) in enumerate(lst, 1):
                scores[i] = scores.get(i, 0.0) + w / (60 + rank)
        else:
            ns = normalize(np.asarray([s for _, s in lst], dtype=np.float64), "minmax")
            for (i, _), s in zip(lst, ns):
                scores[i] = scores.get(i, 0.0) + w * float(s)
    return scores


def system_run(c: Collection, spec: dict, qids: list[str]) -> dict[str, dict[str, float]]:
    """Run of a system spec ``{"signals": {key: weight}, "method": rrf|score, "li": w}``."""
    keys = [k for k, w in spec["signals"].items() if w > 0]
    ws = [spec["signals"][k] for k in keys]
    sig = [c.signal(k) for k in keys]
    text = {q.id: q.text for q in c.queries}
    li_w = spec.get("li", 0.0)
    run = {}
    for qid in qids:
        lists = [s[qid] for s in sig]
        if li_w > 0:
            pool = {i for lst in lists for i, _ in lst}
            li = c.li_scores(qid, text[qid], pool)
            lists = [*lists, sorted(li.items(), key=lambda x: (-x[1], x[0]))]
            w = [*ws, li_w]
        else:
            w = ws
        if len(lists) == 1 and spec["method"] == "rrf" and li_w == 0:
            run[qid] = dict(lists[0])
        else:
            f = fuse(lists, w, spec["method"])
            run[qid] = dict(sorted(f.items(), key=lambda x: (-x[1], x[0]))[:DEPTH])
    return run


def score(c: Collection, spec: dict, split: str) -> dict[str, dict[str, float]]:
    from evals.measures import score_run

    ds = c.train if split == "train" else c.test
    assert ds is not None
    run = system_run(c, spec, [q.id for q in ds.queries])
    return score_run(run, ds.qrels, MEASURES).per_query


# -- choosing settings ------------------------------------------------------------------------
def pools(names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Held-out set -> tuning pool of (collection, split); never the held-out set's test split."""
    out = {}
    for held in names:
        pool = [("scifact", "train")] if "scifact" in names else []
        for n in names:
            if n in (held, "scifact") or {n, held} == {"adi", "cisi"}:
                continue
            pool.append((n, "test"))
        out[held] = pool
    return out


def choose(cols, pool, specs, cache) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Index of the spec with the best macro-mean nDCG@10 over ``pool`` (first on ties)."""
    best, best_v = 0, -1.0
    for j, spec in enumerate(specs):
        vals = []
        for name, split in pool:
            key = (j, name, split)
            if key not in cache:
                pq = score(cols[name], spec, split)["nDCG@10"]
                cache[key] = float(np.mean(list(pq.values())))
            vals.append(cache[key])
        v = float(np.mean(vals))
        if v > best_v + 1e-12:
            best, best_v = j, v
    return best, best_v


def costs(name: str) -> dict:
    """Index time (wall and CPU), bytes per document of the saved index and per-query latency
    of each preset and of RRF(BM25, dense), indexing ``name`` from scratch (MiniLM included)."""
    import tempfile

    from evals import evaluate, load_beir
    from rag.presets import load_preset
    from retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    ds = load_beir(SHARED / name)
    systems = {
        "fast": load_preset("fast"),
        "rrf_bm25_dense": HybridRetriever([BM25Retriever(), DenseRetriever()]),
        "quality": load_preset("quality"),
    }
    only = os.environ.get("BENCH_QUALITY_ONLY")  # e.g. "quality": re-measure one system
    if only:
        systems = {s: r for s, r in systems.items() if s in only.split(",")}
    out = {"dataset": name, "n_docs": len(ds.corpus), "n_queries": len(ds.queries)}
    for s, r in systems.items():
        w, c = time.perf_counter(), time.process_time()
        r.index(ds.corpus)
        if hasattr(r, "_build"):
            r._build()
        for child in getattr(r, "retrievers", []):
            inner = getattr(child, "bm25", child)
            if hasattr(inner, "_build"):
                inner._build()
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        with tempfile.TemporaryDirectory() as tmp:
            from rag.index import write_index
            write_index(r, tmp)
            files = [p for p in Path(tmp).rglob("*") if p.is_file()]
            total = sum(p.stat().st_size for p in files)
            docs = sum(p.stat().st_size for p in files if p.name == "documents.jsonl")
        res = evaluate(r, ds, MEASURES, k=10, batch_size=1, progress=False)
        out[s] = {
            "index_wall_s": round(wall, 2),
            "index_cpu_s": round(cpu, 2),
            "index_bytes_per_doc": round((total - docs) / len(ds.corpus)),
            "stored_text_bytes_per_doc": round(docs / len(ds.corpus)),
            "p50_ms": round(res.latency.p50_ms, 2),
            "p95_ms": round(res.latency.p95_ms, 2),
            "nDCG@10": round(res.aggregate["nDCG@10"], 4),
        }
        print(f"costs {s}: {out[s]}", file=sys.stderr, flush=True)
    return out


def fusion_grid(rk: str, pk: str, lex_weights: tuple[float, ...], li: float) -> list[dict]:
    """Lexical: BM25, RM3 or both (one shared index); dense: MiniLM, Rocchio or both; one weight
    for the lexical children relative to the dense ones (1); late interaction at weight ``li``."""
    return [
        {"signals": {**{x: a for x in lex}, **{x: 1.0 for x in den}}, "method": m, "li": li}
        for lex in (("bm25",), (rk,), ("bm25", rk))
        for den in (("dense",), (pk,), ("dense", pk))
        for a, m in itertools.product(lex_weights, ("rrf", "score"))
    ]


def choose_fused(cols, folds, chosen, use_li: bool, t0: float) -> None:  # type: ignore[no-untyped-def]
    """Per fold: the fold's tuned RM3 and Rocchio settings, then the fusion. "quality" has no late
    interaction (its query-time cost: docs/quality.md); "quality_li" adds it at weight 1."""
    cache: dict = {}
    for held, pool in folds.items():
        rk = next(iter(chosen[held]["rm3_tuned"]["signals"]))
        pk = next(iter(chosen[held]["dense_prf_tuned"]["signals"]))
        chosen[held]["rrf_rm3_prf"] = {
            "signals": {rk: 1.0, pk: 1.0},
            "method": "rrf",
            "tuning_ndcg10": None,
        }
        grids = {"quality": fusion_grid(rk, pk, LEX_WEIGHTS, 0.0)}
        if use_li:
            grids["quality_li"] = fusion_grid(rk, pk, (0.5, 1.0), 1.0)
        for fam, specs in grids.items():
            j, v = choose(cols, pool, specs, cache.setdefault((fam, rk, pk), {}))
            chosen[held][fam] = {**specs[j], "tuning_ndcg10": round(v, 4)}
        print(f"chose quality for {held} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)


def test_report(c: Collection, systems: dict[str, dict]) -> dict:
    """Test-query means of every system and its randomisation test (Holm over the systems of
    this collection and measure) against RRF(BM25, dense)."""
    from evals import compare_systems

    per = {s: score(c, spec, "test") for s, spec in systems.items()}
    out: dict = {"n_docs": len(c.docs), "n_queries": len(c.test.queries), "systems": {}}
    for s, pq in per.items():
        out["systems"][s] = {m: round(float(np.mean(list(pq[m].values()))), 4) for m in MEASURES}
    for m in MEASURES:
        cmp = compare_systems({s: {m: pq[m]} for s, pq in per.items()}, baseline="rrf_bm25_dense")
        for row in cmp:
            out["systems"][row.system][f"{m}_delta"] = round(row.delta, 4)
            out["systems"][row.system][f"{m}_p_holm"] = round(row.p_adjusted, 5)
            out["systems"][row.system][f"{m}_significant"] = row.significant
    return out


def _node(key: str) -> dict:
    kind, _, cfg = key.partition(":")
    params = json.loads(cfg) if cfg else {}
    names = {"bm25": "bm25", "rm3": "bm25_rm3", "dense": "dense", "prf": "dense_prf"}
    return {"type": names[kind], **params}


def spec_config(spec: dict) -> dict:
    """The node config (as in ``rag/data/presets/*.yaml``) that runs ``spec``."""
    keys = [k for k, w in spec["signals"].items() if w > 0]
    li = spec.get("li", 0.0)
    if len(keys) == 1 and not li:
        return _node(keys[0])
    return {
        "type": "rerank_fusion",
        "retrievers": [_node(k) for k in keys],
        "rerankers": [{"type": "late_interaction"}] if li else [],
        "weights": [spec["signals"][k] for k in keys] + ([li] if li else []),
        "method": spec["method"],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="adi,med,cisi,cranfield,scifact")
    ap.add_argument("--no-li", action="store_true", help="skip late interaction candidates")
    ap.add_argument("--costs", default=None, help="only measure the presets' costs on this set")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.costs:
        print(json.dumps(costs(args.costs), indent=1))
        return 0

    names = args.datasets.split(",")
    t0 = time.perf_counter()
    cols = {n: Collection(n, use_li=not args.no_li) for n in names}
    print(f"loaded {names} in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    folds = pools(names)

    # candidate families: name -> (list of specs to choose from)
    rm3_keys = ["rm3:" + json.dumps(p, sort_keys=True) for p in RM3_GRID]
    prf_keys = ["prf:" + json.dumps(p, sort_keys=True) for p in PRF_GRID]
    anserini = "rm3:" + json.dumps(
        {"fb_docs": 10, "fb_terms": 10, "original_query_weight": 0.5}, sort_keys=True
    )
    fixed = {
        "bm25": {"signals": {"bm25": 1.0}, "method": "rrf"},
        "dense": {"signals": {"dense": 1.0}, "method": "rrf"},
        "rrf_bm25_dense": {"signals": {"bm25": 1.0, "dense": 1.0}, "method": "rrf"},
        "rm3_anserini": {"signals": {anserini: 1.0}, "method": "rrf"},
    }
    families: dict[str, list[dict]] = {
        "rm3_tuned": [{"signals": {k: 1.0}, "method": "rrf"} for k in rm3_keys],
        "dense_prf_tuned": [{"signals": {k: 1.0}, "method": "rrf"} for k in prf_keys],
        "weighted_rrf_bm25_dense": [
            {"signals": {"bm25": a, "dense": b}, "method": "rrf"}
            for a, b in itertools.product((0.5, 1.0), (0.5, 1.0, 1.5, 2.0))
        ],
        "convex_bm25_dense": [
            {"signals": {"bm25": round(a, 2), "dense": round(1 - a, 2)}, "method": "score"}
            for a in np.linspace(0.1, 0.9, 9)
        ],
    }
    if not args.no_li:
        fixed["rrf_bm25_dense_li"] = {
            "signals": {"bm25": 1.0, "dense": 1.0},
            "method": "rrf",
            "li": 1.0,
        }
    report: dict = {
        "datasets": {},
        "choices": {},
        "folds": {h: [f"{n}:{s}" for n, s in p] for h, p in folds.items()},
    }
    if "scifact" not in names:  # the shipped preset: chosen on every collection given
        folds["_ship"] = [(n, "test") for n in names]
    chosen: dict[str, dict[str, dict]] = {h: {} for h in folds}
    for fam, specs in families.items():
        ccache: dict = {}
        for held, pool in folds.items():
            j, v = choose(cols, pool, specs, ccache)
            chosen[held][fam] = {**specs[j], "tuning_ndcg10": round(v, 4)}
        print(f"chose {fam} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    choose_fused(cols, folds, chosen, not args.no_li, t0)
    report["choices"] = chosen
    report["datasets"] = {n: test_report(cols[n], {**fixed, **chosen[n]}) for n in names}
    ship = "scifact" if "scifact" in names else "_ship"
    report["preset_quality"] = {"chosen_for": ship, **spec_config(chosen[ship]["quality"])}
    cands = list(report["datasets"][names[0]]["systems"])
    sysv = {n: report["datasets"][n]["systems"] for n in names}
    report["mean_ndcg10"] = {
        s: round(float(np.mean([sysv[n][s]["nDCG@10"] for n in names])), 4) for s in cands
    }
    report["significant_ndcg10_wins"] = {
        s: sum(
            1
            for n in names
            if sysv[n][s].get("nDCG@10_significant") and sysv[n][s]["nDCG@10_delta"] > 0
        )
        for s in cands
    }
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
