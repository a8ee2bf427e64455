"""Search kernels against their peers, in one run, with a quality check beside each timing.

Rows (issue #23's table): exact MaxSim on scifact's MiniLM token vectors, one query per call
(ragnodes float32 / bf16 / the old per-call-conversion path vs plain torch fp32 and numpy over
padded tensors and torch bf16); MUVERA FDE + MaxSim rerank 200 against the fast exact path; exact
dense top-10 on 1M x 384 synthetic vectors (ragnodes vs numpy vs faiss ``IndexFlatIP``) with the
memory-copy bound measured in the same run; binary + float re-scoring on the same vectors and at
smaller sizes (vs faiss ``IndexBinaryFlat`` and the exact float scan) and its recall on scifact;
BM25 batch and single-query throughput on scifact (vs bm25s numpy and numba, identical scores);
late-interaction rerank of 50 candidates with index-time token vectors vs encoding per query.

    OMP_NUM_THREADS=1 python bench/bench_kernels.py [--only maxsim,muvera,dense,binary,bm25,rerank]
        [--threads 2] [--rows 1000000] [--latency-queries 20] [--out results.json]

Token vectors: ``kernels/scifact_tokens`` in the bench cache (``bench/locations.py``), a saved
:class:`TokenStore` (``TokenEncoder("minilm")`` defaults); MiniLM document vectors:
``minilm/scifact.npy`` there (``TransformerEncoder()`` defaults). Sections whose inputs are
missing print ``"skipped"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from locations import DATA, cache

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE, MINILM = cache("kernels"), cache("minilm")

import numpy as np  # noqa: E402


def p50(fn: Any, items: Any, warm: int = 1) -> float:
    items = list(items)
    for x in items[:warm]:
        fn(x)
    times = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 2)


def race(fns: dict[str, Any], items: Any, rounds: int = 1) -> dict[str, float]:
    """p50 (ms) of each function over ``items``, the functions interleaved item by item (and their
    order rotated) so that a shared machine's load drifts over all of them alike."""
    items = list(items)
    names = list(fns)
    for n in names:
        fns[n](items[0])  # warm-up
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for j, x in enumerate(items):
            for n in names[(j + r) % len(names):] + names[: (j + r) % len(names)]:
                t = time.perf_counter()
                fns[n](x)
                times[n].append(time.perf_counter() - t)
    return {n: round(1000 * float(np.median(v)), 2) for n, v in times.items()}


def overlap(a: list[list[Any]], b: list[list[Any]], k: int = 10) -> float:
    """Mean share of ``a``'s top ``k`` found in ``b``'s top ``k`` (recall@k against ``a``)."""
    return round(float(np.mean([len(set(x[:k]) & set(y[:k])) / max(1, len(x[:k]))
                                for x, y in zip(a, b, strict=True)])), 4)


def identical_top(a: list[list[Any]], b: list[list[Any]], k: int = 10) -> float:
    return round(float(np.mean([list(x[:k]) == list(y[:k]) for x, y in zip(a, b, strict=True)])), 4)


def same_top(ids: list[str], scores: list[float], peer_ids: list[str], peer_scores: list[float],
             k: int = 10) -> bool:
    """The same top ``k`` up to the order of tied scores (ties compared as sets): equal score
    lists, equal id sets above the lowest score kept; the peer's zero scores (documents sharing
    no query term, which ragnodes leaves out) are dropped first."""
    keep = [i for i, s in enumerate(peer_scores[:k]) if s != 0]
    p_ids, p_sc = [peer_ids[i] for i in keep], [float(peer_scores[i]) for i in keep]
    o_sc = [float(x) for x in scores[:k]]
    if o_sc != p_sc:
        return False
    if not o_sc:
        return True
    low = o_sc[-1]
    return {i for i, s in zip(ids, o_sc) if s > low} == {i for i, s in zip(p_ids, p_sc) if s > low}


def cpu_model() -> str:
    """The CPU's model name and its widest vector extension (``/proc/cpuinfo``)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = next((x.split(":", 1)[1].strip() for x in info.splitlines()
                 if x.startswith("model name")), "unknown")
    flags = next((x for x in info.splitlines() if x.startswith("flags")), "").split()
    isa = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    return f"{name} ({isa})"


# -- MaxSim ---------------------------------------------------------------------------------------
def scifact():
    from evals.datasets import load_beir

    return load_beir(DATA / "scifact")


def synthetic_tokens(folder: Path, n: int = 5183, dim: int = 384) -> None:
    """A token store shaped like scifact's MiniLM one (lengths ~N(225, 40) clipped to 16..256,
    unit vectors drawn around 2,000 shared "word" directions), for when the real one is missing."""
    from retrievers.multivector import TokenStore

    rng = np.random.default_rng(0)
    words = rng.standard_normal((2000, dim), dtype=np.float32)
    lens = np.clip(rng.normal(225, 40, n).astype(int), 16, 256)
    st = TokenStore()
    for s in range(0, n, 500):
        vecs = []
        for ln in lens[s : s + 500]:
            v = words[rng.integers(0, 2000, ln)] + 0.7 * rng.standard_normal((ln, dim), np.float32)
            vecs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        st.add([f"s{i}" for i in range(s, s + len(vecs))], vecs, [{} for _ in vecs])
    st.save(folder)


def token_store():
    from retrievers.multivector import TokenStore

    folder = CACHE / "scifact_tokens"
    if not (folder / "store.json").exists() and os.environ.get("KERNELS_SYNTHETIC_TOKENS"):
        folder = CACHE / "synthetic_tokens"
        if not (folder / "store.json").exists():
            synthetic_tokens(folder)
    if not (folder / "store.json").exists():
        return None
    s = TokenStore()
    s.restore(folder)
    s.folder = folder  # type: ignore[attr-defined]
    return s


def query_tokens(queries) -> list[np.ndarray]:  # noqa: ANN001
    f = CACHE / "scifact_query_tokens.npz"
    if f.exists():
        z = np.load(f)
        return [z[f"q{i}"] for i in range(len(z.files))]
    from retrievers.multivector import TokenEncoder

    qv = TokenEncoder("minilm").encode_queries([q.text for q in queries])
    tmp = f.with_name(f".{f.name}.{os.getpid()}.npz")
    np.savez(tmp, **{f"q{i}": v for i, v in enumerate(qv)})
    os.replace(tmp, f)
    return qv


def padded(store) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    t, off = store.tokens, store._offsets
    lens = np.diff(off)
    x = np.zeros((len(lens), int(lens.max()), t.shape[1]), dtype=np.float32)
    m = np.zeros((len(lens), int(lens.max())), dtype=bool)
    for i, (a, b) in enumerate(zip(off[:-1], off[1:], strict=True)):
        x[i, : b - a] = t[a:b]
        m[i, : b - a] = True
    return x, m


def bench_maxsim(args, out: dict) -> None:  # noqa: ANN001
    import torch

    from retrievers.multivector import TokenStore

    store = token_store()
    if store is None:
        out["maxsim"] = "skipped: no scifact token store"
        return
    ds = scifact()
    qv = query_tokens(ds.queries)
    lat = list(range(min(args.latency_queries, len(qv))))
    ids = store._ids
    k = 10
    res: dict[str, Any] = {"docs": len(ids), "tokens": len(store.tokens),
                           "max_len": int(np.diff(store._offsets).max()), "threads": args.threads}

    def top(scores: np.ndarray) -> list[str]:
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return [ids[j] for j in order]

    # peers over padded float32 tensors (the plain way)
    x, m = padded(store)
    tx, tm = torch.from_numpy(x), torch.from_numpy(m)

    def torch_plain(i: int, d: Any = None) -> np.ndarray:
        d = tx if d is None else d
        with torch.inference_mode():
            q = torch.from_numpy(np.asarray(qv[i], np.float32))
            s = torch.einsum("qh,nlh->nql", q.to(d.dtype), d).float()
            s = s.masked_fill(~tm[:, None, :], float("-inf"))
            return s.max(-1).values.sum(-1).numpy()

    def numpy_plain(i: int) -> np.ndarray:
        s = np.einsum("qh,nlh->nql", np.asarray(qv[i], np.float32), x, optimize=True)
        s = np.where(m[:, None, :], s, -np.inf)
        return s.max(-1).sum(-1)

    ref = {i: torch_plain(i) for i in lat}
    rows: dict[str, Any] = {}

    def ours(kernel: str) -> Any:
        st = TokenStore(kernel=kernel)
        st.restore(store.folder)
        t0 = time.perf_counter()
        st.packed()
        return st, round(time.perf_counter() - t0, 2)

    def quality(st: Any, sub: list[int]) -> dict[str, Any]:
        got = {i: st.packed().scores(np.asarray(qv[i], np.float32), [0, len(qv[i])])[0]
               for i in sub}
        return {"max_abs_diff_vs_torch": float(max(np.abs(got[i] - ref[i]).max() for i in sub)),
                "top10_identical_vs_torch": identical_top([top(ref[i]) for i in sub],
                                                          [top(got[i]) for i in sub])}

    # race 1: float32 -- plain torch and numpy over padded tensors vs the packed store
    s32, pack_s = ours("float32")
    t = race({"torch_fp32_padded": torch_plain, "numpy_padded": numpy_plain,
              "ragnodes_float32": lambda i: s32.search([qv[i]], k)}, lat)
    npq = {i: numpy_plain(i) for i in lat[:3]}
    rows["torch_fp32_padded"] = {"p50_ms": t["torch_fp32_padded"]}
    rows["numpy_padded"] = {"p50_ms": t["numpy_padded"], "max_abs_diff_vs_torch": float(max(
        np.abs(npq[i] - ref[i]).max() for i in npq))}
    rows["ragnodes_float32"] = {"p50_ms": t["ragnodes_float32"], "pack_s": pack_s,
                                "extra_bytes": s32.packed().nbytes, **quality(s32, lat)}
    s32 = None
    # race 2: bfloat16 -- torch over padded bf16 vs the packed store's bf16 mode
    tb = tx.bfloat16()
    tx = x = m = None  # free the padded float32 copy
    sbf, pack_s = ours("bf16")
    t = race({"torch_bf16_padded": lambda i: torch_plain(i, tb),
              "ragnodes_bf16": lambda i: sbf.search([qv[i]], k)}, lat)
    bf = {i: torch_plain(i, tb) for i in lat}
    rows["torch_bf16_padded"] = {"p50_ms": t["torch_bf16_padded"], "top10_identical_vs_fp32":
                                 identical_top([top(ref[i]) for i in lat],
                                               [top(bf[i]) for i in lat])}
    rows["ragnodes_bf16"] = {"p50_ms": t["ragnodes_bf16"], "pack_s": pack_s,
                             "extra_bytes": sbf.packed().nbytes, **quality(sbf, lat)}
    tb = sbf = None
    # the old path (float16 matrix converted on every call): a few queries suffice
    sst, _ = ours("stream")
    rows["ragnodes_old_stream"] = {"p50_ms": p50(lambda i: sst.search([qv[i]], k), lat[:3]),
                                   **quality(sst, lat[:3])}
    rows["ragnodes_old_stream"]["note"] = "per-call float16->float32 conversion, the old default"
    rows["ragnodes_float32"]["speedup_vs_torch_fp32"] = round(
        rows["torch_fp32_padded"]["p50_ms"] / rows["ragnodes_float32"]["p50_ms"], 2)
    rows["ragnodes_float32"]["speedup_vs_old_path"] = round(
        rows["ragnodes_old_stream"]["p50_ms"] / rows["ragnodes_float32"]["p50_ms"], 2)
    rows["ragnodes_bf16"]["speedup_vs_torch_bf16"] = round(
        rows["torch_bf16_padded"]["p50_ms"] / rows["ragnodes_bf16"]["p50_ms"], 2)
    res["rows"] = rows
    out["maxsim"] = res


def bench_muvera(args, out: dict) -> None:  # noqa: ANN001
    from evals.measures.compute import score_run
    from retrievers.multivector import MuveraFDE
    from retrievers.stores.exact import ExactStore

    store = token_store()
    if store is None:
        out["muvera"] = "skipped: no scifact token store"
        return
    ds = scifact()
    qv = query_tokens(ds.queries)
    qids = [q.id for q in ds.queries]
    ids = store._ids
    lat = list(range(min(args.latency_queries, len(qv))))
    evalq = range(len(qv)) if args.muvera_ndcg else lat  # nDCG needs every query: slow
    exact = store.search([qv[i] for i in evalq], 100)  # one batched call
    fde = MuveraFDE(k_sim=5, d_proj=16, r_reps=20)
    offs = store._offsets
    vecs = [np.asarray(store.tokens[a:b], np.float32) for a, b in zip(offs[:-1], offs[1:])]
    fstore = ExactStore()
    fstore.add(ids, fde.encode_documents(vecs), [{} for _ in ids])
    del vecs

    def muvera(i: int) -> list[tuple[str, float]]:
        c = fstore.search(fde.encode_queries([qv[i]]), 200)[0]
        cid = [x for x, _ in c]
        return sorted(zip(cid, store.score(qv[i], cid).tolist(), strict=True),
                      key=lambda h: -h[1])[:100]

    runs = [muvera(i) for i in evalq]

    def ndcg(run: list) -> float | None:
        if not args.muvera_ndcg:
            return None  # scores equal the slow path's: see docs/multivector.md for nDCG
        s = score_run({q: dict(h) for q, h in zip(qids, run, strict=True)}, ds.qrels, ["nDCG@10"])
        return round(s.mean["nDCG@10"], 4)

    t = race({"exact": lambda i: store.search([qv[i]], 100), "muvera": muvera}, lat)
    ex_ms, mu_ms = t["exact"], t["muvera"]
    out["muvera"] = {
        "fde": fde.to_config(), "candidates": 200, "queries_evaluated": len(evalq),
        "exact_fast": {"p50_ms": ex_ms, "nDCG@10": ndcg(exact)},
        "muvera_rerank200": {"p50_ms": mu_ms, "nDCG@10": ndcg(runs),
                             "recall10_vs_exact": overlap([[d for d, _ in r] for r in exact],
                                                          [[d for d, _ in r] for r in runs])},
        "speedup_vs_fast_exact": round(ex_ms / mu_ms, 2),
    }


# -- dense and binary -----------------------------------------------------------------------------
def synthetic(n: int, d: int = 384, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors (1,000 centres + noise), float32, generated in blocks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, d), dtype=np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):
        b = min(n, s + 100_000) - s
        blk = centres[rng.integers(0, 1000, b)] + 1.5 * rng.standard_normal((b, d), np.float32)
        x[s : s + b] = blk / np.linalg.norm(blk, axis=1, keepdims=True)
    return x


def copy_bound(x: np.ndarray, threads: int) -> dict[str, float]:
    """Copy bandwidth (bytes copied / second, best of 3) with 1 and ``threads`` threads, and the
    time one read of ``x`` cannot beat at that bandwidth."""
    from concurrent.futures import ThreadPoolExecutor

    dst = np.empty_like(x)
    dst.fill(0)  # fault the pages in first
    out = {}
    for t in sorted({1, threads}):
        parts = np.array_split(np.arange(len(x)), t)
        best = np.inf
        for _ in range(5):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(t) as pool:
                list(pool.map(lambda p, dst=dst: np.copyto(dst[p[0] : p[-1] + 1],
                                                           x[p[0] : p[-1] + 1]), parts))
            best = min(best, time.perf_counter() - t0)
        out[f"copy_GBps_{t}t"] = round(x.nbytes / best / 1e9, 1)
    bw = max(out.values())
    out["bound_ms"] = round(1000 * x.nbytes / (bw * 1e9), 1)
    return out


def store_over(x: np.ndarray, ids: list[str], **kw: Any) -> Any:
    """An ExactStore whose vectors are ``x`` itself (no second copy of a 1.5 GB matrix)."""
    from retrievers.stores.exact import ExactStore

    s = ExactStore(**kw)
    s.add(ids[:1], x[:1], [{}])
    s._vecs, s._ids = x, ids[: len(x)]
    s._payloads = [{} for _ in s._ids]
    s._row = {i: r for r, i in enumerate(s._ids)}
    s._codes = None
    return s


def bench_dense_binary(args, out: dict) -> None:  # noqa: ANN001
    import faiss

    from retrievers.kernels import dense as kdense
    from retrievers.stores.exact import topk_rows

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(1)
    res: dict[str, Any] = {"threads": args.threads}
    sizes = sorted({s for s in (10_000, 100_000) if s < args.rows} | {args.rows})
    x_all = synthetic(args.rows)
    nq = args.latency_queries
    q = x_all[rng.choice(len(x_all), nq, replace=False)] + 0.05 * rng.standard_normal(
        (nq, x_all.shape[1]), np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    ids = [str(i) for i in range(args.rows)]
    qs = list(range(nq))
    for n in sizes:
        x = x_all[:n]
        row: dict[str, Any] = {}
        truth = topk_rows(q @ x.T, 10)[0]
        exact = store_over(x, ids)
        exact.threads = args.threads
        got = [kdense.topk(q[i : i + 1], x, 10, None, args.threads)[0][0] for i in qs]
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        _, fi = flat.search(q, 10)
        b = store_over(x, ids, quantization="binary")
        b.search(q[:1], 10)  # codes built, kernel compiled
        bres = b.search(q, 10)
        bits = np.packbits(x > b._codebook.thresholds[0], axis=1)
        fb = faiss.IndexBinaryFlat(x.shape[1])
        fb.add(bits)
        qb = np.packbits(q > b._codebook.thresholds[0], axis=1)
        _, fbi = fb.search(qb, 10)
        t = race({
            "ragnodes_exact": lambda i, e=exact: e.search(q[i : i + 1], 10),
            "numpy_exact": lambda i, x=x: np.argpartition(-(x @ q[i]), 10)[:10],
            "faiss_flat_ip": lambda i, f=flat: f.search(q[i : i + 1], 10),
            "ragnodes_binary_rescore": lambda i, b=b: b.search(q[i : i + 1], 10),
            "faiss_binary_flat": lambda i, f=fb, c=qb: f.search(c[i : i + 1], 10),
        }, qs)
        truth_l = [list(v) for v in truth]
        row["ragnodes_exact"] = {"p50_ms": t["ragnodes_exact"], "top10_identical_vs_numpy":
                                 identical_top(truth_l, [list(g) for g in got])}
        row["numpy_exact"] = {"p50_ms": t["numpy_exact"]}
        row["faiss_flat_ip"] = {"p50_ms": t["faiss_flat_ip"], "recall10": overlap(truth_l,
                                                                                  fi.tolist())}
        row["ragnodes_binary_rescore"] = {
            "p50_ms": t["ragnodes_binary_rescore"],
            "recall10": overlap(truth_l, [[int(h) for h, _ in r] for r in bres])}
        row["faiss_binary_flat"] = {"p50_ms": t["faiss_binary_flat"],
                                    "recall10": overlap(truth_l, fbi.tolist())}
        flat = None
        if n == args.rows:  # measured with the faiss copy freed (memory)
            row.update(copy_bound(x, args.threads))

        def old(i: int, b=b) -> Any:
            s = b._approx_scores(q[i : i + 1])
            return b._rescored(q[i : i + 1], s, 10)

        row["ragnodes_binary_old_decode_path"] = {"p50_ms": p50(old, qs[:3])}
        if n == args.rows:
            row["ragnodes_exact"]["vs_bound"] = round(
                row["ragnodes_exact"]["p50_ms"] / row["bound_ms"], 2)
        fb = b = exact = None
        rb, fbm = row["ragnodes_binary_rescore"]["p50_ms"], row["faiss_binary_flat"]["p50_ms"]
        row["binary_vs_faiss_binary"] = round(rb / fbm, 2)
        row["binary_faster_than_exact"] = rb < row["ragnodes_exact"]["p50_ms"]
        res[str(n)] = row
        print(json.dumps({f"dense_binary_{n}": row}), file=sys.stderr, flush=True)
    x_all = None
    res["scifact_binary_recall"] = scifact_binary_recall()
    out["dense_binary"] = res


def scifact_binary_recall() -> Any:
    """Recall@10 against exact float search of the binary store on scifact's MiniLM vectors."""
    f = MINILM / "scifact.npy"
    if not f.exists():
        return "skipped: no cached scifact MiniLM vectors"
    from rag.core.encoders import TransformerEncoder
    from retrievers.stores.exact import ExactStore

    x = np.load(f)
    ids = json.loads((MINILM / "scifact.ids.json").read_text())
    qf = CACHE / "scifact_queries.npy"
    if qf.exists():
        q = np.load(qf)
    else:
        q = TransformerEncoder().encode([x.text for x in scifact().queries], kind="query")
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(qf, q)
    out = {}
    truth = ExactStore()
    truth.add(ids, x, [{} for _ in ids])
    t = [[h for h, _ in r] for r in truth.search(q, 10)]
    for label, factor in (("hamming_factor_16 (default)", 16.0), ("hamming_factor_8", 8.0),
                          ("full_asymmetric (old)", 1e9)):
        s = ExactStore(quantization="binary")
        s.hamming_factor = factor
        s.add(ids, x, [{} for _ in ids])
        out[label] = overlap(t, [[h for h, _ in r] for r in s.search(q, 10)])
    return out


# -- BM25 -----------------------------------------------------------------------------------------
def bench_bm25(args, out: dict) -> None:  # noqa: ANN001
    import bm25s
    import Stemmer

    from retrievers import BM25Retriever

    ds = scifact()
    texts = [q.text for q in ds.queries]
    r = BM25Retriever().index(ds.corpus)
    r.retrieve_batch(texts[:2], k=10)  # build, compile
    stem = Stemmer.Stemmer("english")
    r._build()  # a bm25s index over the same documents (the default path searches segments)
    peer = r._bm25

    def bm25s_batch(backend: str) -> Any:
        toks = bm25s.tokenize(texts, stopwords="en", stemmer=stem, return_ids=False,
                              show_progress=False)
        vocab = peer.vocab_dict
        toks = [[t for t in x if t in vocab] or [next(iter(vocab))] for x in toks]
        if backend == "numba":
            peer.backend = "numba"
        try:
            return peer.retrieve(toks, k=10, show_progress=False, backend_selection=backend,
                                 n_threads=1)
        finally:
            peer.backend = "numpy"

    from rag.core.types import Query, Ranking

    qs = [Query(text=t) for t in texts]
    found = r._search(qs, 10, None)
    docs = r.documents

    def construct(_: Any) -> Any:  # object construction on its own: arrays -> Rankings
        return Ranking.batch_from_arrays(qs, found, docs, 10, "bm25")

    def with_hits(_: Any) -> Any:  # the public call, then every hit's document read
        return [h.document for rk in r.retrieve_batch(texts, k=10) for h in rk.hits]

    res: dict[str, Any] = {
        "queries": len(texts), "threads": 1,
        "note": "shared machine: compare the ratios, measured side by side",
        "timings_include": {
            "ragnodes": "BM25Retriever._search: tokenize the 300 texts, kernel, per-query "
                        "(ids, scores) arrays; no documents",
            "ragnodes_rankings": "the public retrieve_batch(texts, k=10): check, tokenize, "
                                 "kernel, Rankings with their documents looked up; Hit objects "
                                 "not built (lazy: built on the first read of .hits)",
            "ragnodes_rankings_hits": "retrieve_batch, then every hit's .document read (all "
                                      "3,000 Hit objects built)",
            "construct_rankings": "Ranking.batch_from_arrays alone over _search's arrays "
                                  "(what retrieve_batch does; lazy rankings)",
            "bm25s_numpy / bm25s_numba": "bm25s.tokenize (stopwords, the same stemmer) + "
                                         "BM25.retrieve(k=10): (B, 10) document rows and "
                                         "scores, no ids, no documents",
        },
    }
    t = race({"ragnodes": lambda _: r._search(qs, 10, None),
              "ragnodes_rankings": lambda _: r.retrieve_batch(texts, k=10),
              "ragnodes_rankings_hits": with_hits,
              "construct_rankings": construct,
              "bm25s_numpy": lambda _: bm25s_batch("numpy"),
              "bm25s_numba": lambda _: bm25s_batch("numba")}, range(7), rounds=3)
    for name, ms in t.items():
        res[f"batch_{name}_qps"] = round(len(texts) / (ms / 1000))
    res["construct_rankings_ms_per_batch"] = t["construct_rankings"]
    ours = r.retrieve_batch(texts, k=10)
    theirs = bm25s_batch("numba")
    res["batch_scores_identical"] = bool(all(
        np.array_equal(np.asarray(o.scores, np.float32), np.asarray(s[: len(o.scores)]))
        for o, s in zip(ours, theirs.scores, strict=True)))
    res["batch_top10_identical_ties_as_sets"] = float(np.mean([
        same_top(o.ids, o.scores, [r._order[j] for j in d], list(s))
        for o, d, s in zip(ours, theirs.documents.tolist(), theirs.scores, strict=True)]))
    res["batch_vs_bm25s_numpy"] = round(res["batch_ragnodes_qps"] / res["batch_bm25s_numpy_qps"], 2)
    res["batch_vs_bm25s_numba"] = round(res["batch_ragnodes_qps"] / res["batch_bm25s_numba_qps"], 2)
    res["retrieve_batch_vs_bm25s_numba"] = round(
        res["batch_ragnodes_rankings_qps"] / res["batch_bm25s_numba_qps"], 2)
    res["retrieve_batch_hits_vs_bm25s_numba"] = round(
        res["batch_ragnodes_rankings_hits_qps"] / res["batch_bm25s_numba_qps"], 2)

    def one_bm25s(t: str) -> Any:
        toks = bm25s.tokenize([t], stopwords="en", stemmer=stem, return_ids=False,
                              show_progress=False)
        toks = [[w for w in toks[0] if w in peer.vocab_dict] or [next(iter(peer.vocab_dict))]]
        return peer.retrieve(toks, k=10, show_progress=False, n_threads=1)

    t = race({"ours": lambda x: r.retrieve(x, k=10), "bm25s": one_bm25s}, texts)
    one_ms, peer_ms = t["ours"], t["bm25s"]
    res["single_ragnodes_qps"] = round(1000 / one_ms)
    res["single_bm25s_qps"] = round(1000 / peer_ms)
    res["single_vs_bm25s"] = round(peer_ms / one_ms, 2)
    out["bm25"] = res


# -- late-interaction rerank ----------------------------------------------------------------------
def bench_rerank(args, out: dict) -> None:  # noqa: ANN001
    from rerankers import LateInteractionReranker
    from retrievers import BM25Retriever

    store = token_store()
    if store is None:
        out["rerank"] = "skipped: no scifact token store"
        return
    ds = scifact()
    bm = BM25Retriever().index(ds.corpus)
    n = min(args.latency_queries, 10)
    pools = bm.retrieve_batch([q.text for q in ds.queries[:n]], k=50)
    warm = LateInteractionReranker(cache_size=0)
    warm.use_token_store(store)
    cold = LateInteractionReranker(cache_size=0)
    warm.rerank(pools[0])
    cold.load()
    a = [warm.rerank(p) for p in pools[:3]]
    b = [cold.rerank(p) for p in pools[:3]]
    out["rerank"] = {
        "candidates": 50, "first_stage": "bm25",
        "index_time_tokens_p50_ms": p50(warm.rerank, pools),
        "encode_per_query_p50_ms": p50(cold.rerank, pools[:3], warm=0),
        # the store's vectors were encoded in batches of 256, the cold ones in batches of 50:
        # padding moves the float16-rounded vectors slightly
        "top10_identical": float(np.mean([x.ids[:10] == y.ids[:10] for x, y in zip(a, b)])),
        "max_abs_score_diff": max(float(np.abs(np.sort(x.scores) - np.sort(y.scores)).max())
                                  for x, y in zip(a, b)),
    }
    out["rerank"]["speedup"] = round(out["rerank"]["encode_per_query_p50_ms"]
                                     / out["rerank"]["index_time_tokens_p50_ms"], 1)


SECTIONS = {"maxsim": bench_maxsim, "muvera": bench_muvera, "dense": bench_dense_binary,
            "bm25": bench_bm25, "rerank": bench_rerank}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--latency-queries", type=int, default=20)
    ap.add_argument("--out", default=None)
    ap.add_argument("--muvera-ndcg", action="store_true", help="exact MaxSim for all queries")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "cpu": cpu_model(),
                                          "load_avg_1m": round(os.getloadavg()[0], 1)}}
    for name in args.only.split(","):
        t0 = time.perf_counter()
        SECTIONS[name](args, report)
        report.setdefault("section_s", {})[name] = round(time.perf_counter() - t0, 1)
        print(json.dumps({name: report.get(name, report.get("dense_binary"))}), file=sys.stderr,
              flush=True)
    report["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 1)
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
