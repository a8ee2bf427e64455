"""The floor server for ``bench_server.py --peer floor``: hybrid search with nothing but FastAPI,
sentence-transformers, numpy and bm25s, what a user would write in an afternoon.

``POST /search {"query", "k"}``: the query encoded by sentence-transformers (all-MiniLM-L6-v2,
normalised), exact cosine over the corpus vectors (one numpy product, ``argpartition``), bm25s
(Lucene BM25, ``k1=0.9, b=0.4``, English stopwords and Snowball stems: ragnodes's defaults) top
``DEPTH``, reciprocal-rank fusion (``k = 60``) of the two top-``DEPTH`` lists (``DEPTH``: the
fifth argument, default 100; ``bench_server.py`` passes the ragnodes hybrid's depth), the top ``k``
returned with their documents (id, title, text, metadata) and fused scores. The same API-key
check as ``rag serve`` (one constant-time compare), a plain sync endpoint (FastAPI's threadpool).

    python bench/floor_server.py CORPUS.jsonl VECTORS.npy IDS.json PORT [DEPTH]

``VECTORS.npy``: the corpus's MiniLM vectors in ``IDS.json`` order (the same file ragnodes's
index is built from, so both servers search identical document vectors).
"""

from __future__ import annotations

import hmac
import json
import os
import sys

import bm25s
import numpy as np
import Stemmer
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

DEPTH, RRF_K = 100, 60


class SearchRequest(BaseModel):
    query: str
    k: int = 10


def main() -> None:
    global DEPTH
    corpus_path, vec_path, ids_path, port = sys.argv[1:5]
    if len(sys.argv) > 5:
        DEPTH = int(sys.argv[5])
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from rag.core.models import resolve_model  # only to find the packaged MiniLM folder

    docs = {}
    with open(corpus_path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            did = str(d.pop("_id"))
            docs[did] = {"id": did, "title": d.pop("title", ""), "text": d.pop("text", ""),
                         "metadata": d.get("metadata", {})}
    ids = json.loads(open(ids_path).read())
    vecs = np.load(vec_path).astype(np.float32)
    texts = [f"{docs[i]['title']} {docs[i]['text']}" if docs[i]["title"] else docs[i]["text"]
             for i in ids]
    stemmer = Stemmer.Stemmer("english")
    bm25 = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    bm25.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
               show_progress=False)
    model = SentenceTransformer(resolve_model("minilm"), device="cpu")
    key = os.environ["RAG_API_KEYS"].encode()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/search")
    def search(req: SearchRequest, authorization: str = Header("")) -> dict:
        if not hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), key):
            raise HTTPException(401, "bad key")
        q = model.encode([req.query], normalize_embeddings=True)[0]
        sims = vecs @ q
        top = np.argpartition(-sims, DEPTH)[:DEPTH]
        dense = top[np.argsort(-sims[top], kind="stable")]
        toks = bm25s.tokenize([req.query], stopwords="en", stemmer=stemmer, return_ids=False,
                              show_progress=False)[0]
        toks = [t for t in toks if t in bm25.vocab_dict]
        fused: dict[int, float] = {}
        if toks:  # a query with no indexed word has no lexical list
            lex, lex_s = bm25.retrieve([toks], k=DEPTH, show_progress=False, n_threads=1)
            for rank, j in enumerate(lex[0][lex_s[0] > 0].tolist(), 1):
                fused[j] = fused.get(j, 0.0) + 1.0 / (RRF_K + rank)
        for rank, j in enumerate(dense.tolist(), 1):
            fused[j] = fused.get(j, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda x: (-x[1], ids[x[0]]))[: req.k]
        return {"query": req.query,
                "hits": [{"document": docs[ids[j]], "score": s} for j, s in best]}

    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


if __name__ == "__main__":
    main()
