"""Follow-up retrieval: single-shot vs history-aware queries on two-turn exchanges built from the
shared collections' real queries. Prints one JSON object.

Each judged query becomes a two-turn exchange. The query's topic is a likely noun phrase (a run
of content words after a preposition or determiner, or opening the query; see ``topic_span``);
turn 1 asks about it ("Tell me about <topic>."), turn 2 is the query with the topic replaced by
"it". The query's own relevance
judgments are the truth for turn 2. Retrieval strategies for turn 2:

* ``follow_up``: the follow-up alone (single shot);
* ``concat``: turn 1's question and the follow-up, joined;
* ``condensed``: SmolLM2-135M's standalone rewrite (``rag.app.chat.condense_question``, greedy);
* ``fusion``: RRF of ``follow_up`` and ``concat`` (no model call);
* ``original``: the original query (the upper bound a perfect rewrite could reach).

nDCG@10 of the retrieval step for BM25 and for MiniLM dense (from the cached benchmark indexes,
``bench/bench_reference.py``), with the paired randomisation test of each strategy against
``follow_up``. SmolLM2 calls are bounded: the first ``--n`` judged queries per collection (file
order), 1 torch thread; every strategy is scored on that same subset.

    python bench/bench_chat.py [--datasets scifact,cranfield,cisi,med,adi] [--n 100] [--no-dense]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "datasets"
STRATEGIES = ("follow_up", "concat", "condensed", "fusion", "original")
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
STOP = set(
    """a about above after again all also am an and any are as at be been before being below between
    both but by can could did do does doing during each few for from further had has have having he
    her here hers him his how i if in into is it its itself me more most my no nor not of off on
    once only or other our out over own same she should so some such than that the their them then
    there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours whether used use using given obtained
    available possible made make certain""".split()
)


def idf_table(corpus) -> dict[str, float]:
    df: Counter[str] = Counter()
    for d in corpus:
        df.update({w.lower() for w in WORD.findall(d.full_text)})
    n = len(corpus)
    return {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}


LEAD = set("of in on for about with the a an to by from between into during".split())


def _clean(w: str) -> str:
    return w.strip(",;:()'\"")


def topic_span(words: list[str], idf: dict[str, float]) -> tuple[int, int] | None:
    """The likeliest noun phrase: a run of content words after a preposition or determiner (its
    last 3 words, English noun phrases being head-final) or opening the query (its first 2),
    with the largest summed IDF."""
    content = [
        bool(m) and m.group(0).lower() not in STOP and len(m.group(0)) > 2
        for m in (WORD.fullmatch(_clean(w)) for w in words)
    ]
    best, span, i = -1.0, None, 0
    while i < len(words):
        if not content[i]:
            i += 1
            continue
        j = i
        while j < len(words) and content[j] and not words[j - 1].endswith((",", ";")) or j == i:
            j += 1
        if i == 0:
            a, b = 0, min(j, 2)
        elif _clean(words[i - 1]).lower() in LEAD:
            a, b = max(i, j - 3), j
        else:
            i = j
            continue
        s = sum(idf.get(_clean(w).lower(), 0.0) for w in words[a:b])
        if s > best:
            best, span = s, (a, b)
        i = j
    return span


def exchange(text: str, idf: dict[str, float]) -> tuple[str, str] | None:
    """(turn 1, follow-up) for one query, or None when no topic span is found."""
    words = text.rstrip(" ?.").split()
    span = topic_span(words, idf)
    if span is None:
        return None
    i, j = span
    topic = " ".join(_clean(w) for w in words[i:j])
    follow = " ".join([*words[:i], "it", *words[j:]])
    return f"Tell me about {topic}.", follow[0].upper() + follow[1:] + "?"


def rankings_for(retriever, texts: dict[str, str], k: int):
    from rag.core.types import Query

    qs = [Query(id=qid, text=t) for qid, t in texts.items()]
    return retriever.retrieve_batch(qs, k=k)


def score(rankings, qrels) -> dict[str, float]:
    from evals import run_from_rankings, score_run

    return score_run(run_from_rankings(rankings), qrels, ["nDCG@10"]).per_query["nDCG@10"]


def run_one(name: str, n: int, gen, dense: bool) -> dict:
    import numpy as np

    from evals import load_beir, randomization_test
    from rag.app.chat import Turn, concat_query, condense_question
    from retrievers import BM25Retriever
    from retrievers.fusion import rrf

    ds = load_beir(SHARED / name)
    idf = idf_table(ds.corpus)
    queries = [q for q in ds.queries if exchange(q.text, idf)][:n]
    texts: dict[str, dict[str, str]] = {s: {} for s in STRATEGIES}
    examples, t0 = [], time.perf_counter()
    for q in queries:
        first, follow = exchange(q.text, idf)  # type: ignore[misc]
        history = [Turn(question=first, answer="", query=first)]
        condensed = condense_question(gen, history, follow, max_new_tokens=48) or follow
        texts["follow_up"][q.id], texts["original"][q.id] = follow, q.text
        texts["concat"][q.id], texts["condensed"][q.id] = concat_query(history, follow), condensed
        if len(examples) < 3:
            examples.append(
                {"original": q.text, "turn1": first, "follow_up": follow, "condensed": condensed}
            )
    condense_s = time.perf_counter() - t0
    retrievers = {"bm25": BM25Retriever().index(ds.corpus)}
    if dense:
        from bench_reference import dense_index

        retrievers["dense_minilm"] = dense_index(name, ds, "auto")[0]
    out: dict = {
        "n_queries": len(queries),
        "condense_s_per_query": round(condense_s / len(queries), 2),
        "examples": examples,
        "ndcg@10": {},
        "p_vs_follow_up": {},
    }
    for rname, r in retrievers.items():
        ranks = {s: rankings_for(r, texts[s], 100) for s in STRATEGIES if s != "fusion"}
        ranks["fusion"] = [rrf([a, b]) for a, b in zip(ranks["follow_up"], ranks["concat"])]
        per_q = {s: score(ranks[s], ds.qrels) for s in STRATEGIES}
        qids = sorted(per_q["follow_up"])
        out["ndcg@10"][rname] = {
            s: round(float(np.mean(list(v.values()))), 4) for s, v in per_q.items()
        }
        base = np.array([per_q["follow_up"][q] for q in qids])
        out["p_vs_follow_up"][rname] = {
            s: round(randomization_test(np.array([per_q[s][q] for q in qids]), base), 4)
            for s in STRATEGIES
            if s != "follow_up"
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="scifact,cranfield,cisi,med,adi")
    ap.add_argument(
        "--n", type=int, default=100, help="judged queries per collection (SmolLM2 calls)"
    )
    ap.add_argument("--no-dense", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from rag.generators import TransformersGenerator

    gen = TransformersGenerator(max_new_tokens=48).load()
    report: dict = {
        "model": "smollm2-135m (greedy, 1 thread)",
        "n_per_collection": args.n,
        "measure": "nDCG@10 of turn-2 retrieval",
        "datasets": {},
    }
    for name in args.datasets.split(","):
        report["datasets"][name] = run_one(name, args.n, gen, not args.no_dense)
        print(f"done {name}", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
