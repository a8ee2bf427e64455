"""Child process of tests/index/test_index_durable.py: writes to an index folder, acknowledging each
write only after ``Pipeline.index``/``delete`` returned (i.e. after the commit).

    python tests/index_child.py add INDEX ID TEXT        one document, prints "acked"
    python tests/index_child.py load INDEX ACKS SEED N   N mixed adds/deletes, one ack line each
    python tests/index_child.py hold INDEX               take the writer lock, print, sleep
    python tests/index_child.py init INDEX KIND          an empty bm25, hybrid or multivector index
    python tests/index_child.py qdrant FOLDER            hold a Qdrant local folder open
    python tests/index_child.py dense INDEX [QDRANT]     write a dense index, print its results

``$RAG_CRASH_AT`` (rag.index.files.crash_point) SIGKILLs the writer at a named step.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.pipeline import Pipeline  # noqa: E402

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi".split()
QUERIES = ["largest planet", "rings of ice", "moon with an atmosphere"]


def text_of(doc_id: str, version: int = 0) -> str:
    """Deterministic text of a document (its id's words), so a reader can check it."""
    rng = random.Random(f"{doc_id}:{version}")
    return f"{doc_id} " + " ".join(rng.choice(WORDS) for _ in range(6))


def ack(f, line: str) -> None:  # type: ignore[no-untyped-def]
    f.write(line + "\n")
    f.flush()
    os.fsync(f.fileno())


def load(index: str, acks: str, seed: int, n: int) -> None:
    """Mixed load: adds of new ids (and re-adds), deletes of acknowledged ids."""
    rng = random.Random(seed)
    pipe = Pipeline.open(index)
    with open(acks, "a", encoding="utf-8") as f:
        for step in range(n):
            live = [i for i in pipe.retriever.documents]
            if live and rng.random() < 0.3:
                victims = rng.sample(live, min(len(live), rng.randint(1, 3)))
                ack(f, "try-del\t" + ",".join(victims))  # in flight: may or may not apply
                pipe.delete(victims)
                ack(f, "del\t" + ",".join(victims))
            else:
                ids = [f"s{seed}-{step}-{j}" for j in range(rng.randint(1, 4))]
                pipe.index([{"id": i, "text": text_of(i)} for i in ids])
                ack(f, "add\t" + ",".join(ids))


def main() -> int:
    mode, index = sys.argv[1], sys.argv[2]
    if mode == "init":  # an empty index of a kind: bm25 | hybrid (BM25 + dense MiniLM)
        from retrievers import BM25Retriever, DenseRetriever, HybridRetriever

        kind = sys.argv[3]
        if kind == "multivector":
            from retrievers.multivector import MultiVectorRetriever

            r = MultiVectorRetriever(backend="muvera")
        else:
            r = BM25Retriever() if kind == "bm25" else HybridRetriever(
                [BM25Retriever(), DenseRetriever()])
        Pipeline(retriever=r).save(index)
    elif mode == "qdrant":  # hold a Qdrant local folder open
        from retrievers import QdrantStore

        store = QdrantStore(path=index)
        store.client.get_collections()
        print("open", flush=True)
        time.sleep(60)
    elif mode == "add":
        Pipeline.open(index).index([{"id": sys.argv[3], "text": sys.argv[4]}])
        print("acked", flush=True)
    elif mode == "load":
        load(index, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "hold":
        pipe = Pipeline.open(index)
        pipe.session.acquire()
        print("locked", flush=True)
        time.sleep(60)
    elif mode == "dense":
        from rag.app.cli import demo_corpus_path
        from rag.index.persist import read_documents
        from retrievers import DenseRetriever

        store = None
        if len(sys.argv) > 3:  # a Qdrant local folder instead of the exact store
            from retrievers import QdrantStore

            store = QdrantStore(path=sys.argv[3])
        pipe = Pipeline(retriever=DenseRetriever(store=store))
        pipe.index(read_documents(demo_corpus_path()))
        pipe.save(index)
        out = [[(h.id, h.score) for h in pipe.search(q, k=5).hits] for q in QUERIES]
        print(json.dumps(out), flush=True)
        if store is not None:
            store.close()  # Qdrant local mode: release the folder for the reader
    return 0


if __name__ == "__main__":
    sys.exit(main())
