"""Everything a query reads is in the commit: damage to any file of a hybrid + late-interaction
index, or of a Qdrant-backed index (its local Qdrant folder included), ends in one line naming the
file and the repair (exit 2; a logged 500 under a running server, which keeps serving), never a
traceback or a silently wrong ranking. Tiny corpora: the 24 demo notes, BM25 + MiniLM, late
interaction over MiniLM token vectors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from rag.app.cli import main
from rag.core.errors import ConfigError
from rag.pipeline import Pipeline
from rerankers import LateInteractionReranker
from retrievers import BM25Retriever, DenseRetriever, HybridRetriever, QdrantStore
from retrievers.multivector import TokenEncoder

QUERY = "largest planet"
DAMAGE = ("truncated", "emptied", "flipped", "deleted")


def damage(p: Path, how: str) -> None:
    data = p.read_bytes()
    if how == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif how == "emptied":
        p.write_bytes(b"")
    elif how == "flipped":  # one bit, in the middle: the size is unchanged
        i = len(data) // 2
        p.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :])
    elif how == "deleted":
        p.unlink()


def one_line_naming(rc: int, err: str, name: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert name in err and ("--repair" in err or "re-ingest" in err), err


# -- a hybrid + late-interaction index -----------------------------------------------------------
@pytest.fixture(scope="module")
def hybrid(tmp_path_factory, demo_docs) -> tuple[Path, list[str]]:
    """The index (two commits: every kind of file twice) and its clean ranking."""
    idx = tmp_path_factory.mktemp("hybrid") / "idx"
    rr = LateInteractionReranker(encoder=TokenEncoder(precision="fp32"), cache_size=0)
    pipe = Pipeline(retriever=HybridRetriever([BM25Retriever(), DenseRetriever()]),
                    rerankers=[rr], k=5, candidates=12)
    pipe.index(demo_docs[:12]).save(idx)
    pipe.index(demo_docs[12:])
    pipe.close()
    return idx, pipe.search(QUERY).ids


HYBRID_FILES = {
    "manifest": "manifest.json",
    "documents": "*.docs",
    "bm25": "*.bm25",
    "vectors": "*.vec",
    "tokens": "*.tok",
}


def test_late_interaction_tokens_are_committed_segments(hybrid, tmp_path):
    idx, want = hybrid
    assert len(list(idx.glob("*.tok"))) == 2  # appended per commit, named by the manifest
    back = Pipeline.open(idx)
    assert back.rerankers[0].token_store.count() == 24
    assert back.search(QUERY).ids == want
    back.delete(["jupiter"])  # deletes reach the token store too, in the same commit
    assert Pipeline.open(idx).rerankers[0].token_store.count() == 23


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("which", sorted(HYBRID_FILES))
def test_damaged_hybrid_file_is_one_line(hybrid, tmp_path, which, how, capsys):
    idx = tmp_path / "idx"
    shutil.copytree(hybrid[0], idx)
    target = sorted(idx.glob(HYBRID_FILES[which]))[-1]
    damage(target, how)
    rc = main(["search", str(idx), QUERY])
    one_line_naming(rc, capsys.readouterr().err, target.name)


def test_scrambled_token_rows_are_caught_not_ranked(hybrid, tmp_path, capsys):
    """Rows reversed in place (same size): the audit's silent wrong ranking, now one line."""
    import numpy as np

    from rag.index import IndexFolder

    idx = tmp_path / "idx"
    shutil.copytree(hybrid[0], idx)
    body = IndexFolder(idx).read_manifest()
    seg = body["nodes"]["rerank0"]["tokens"]["segments"][0]
    spec = seg["layout"]["tokens"]
    f = idx / f"{seg['name']}.tok"
    raw = bytearray(f.read_bytes())
    n = int(np.prod(spec["shape"])) * np.dtype(spec["dtype"]).itemsize
    rows = np.frombuffer(bytes(raw[spec["offset"] : spec["offset"] + n]), dtype=spec["dtype"])
    raw[spec["offset"] : spec["offset"] + n] = rows.reshape(spec["shape"])[::-1].tobytes()
    f.write_bytes(bytes(raw))
    one_line_naming(main(["search", str(idx), QUERY]), capsys.readouterr().err, f.name)


# -- a Qdrant-backed index ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def qdrant_built(tmp_path_factory, demo_docs) -> tuple[Path, Path, Path]:
    """A dense index over a Qdrant local folder outside it; pristine copies to restore from."""
    root = tmp_path_factory.mktemp("qdrant")
    idx, qp = root / "idx", root / "qdrant"
    store = QdrantStore(path=str(qp), collection="notes")
    Pipeline(retriever=DenseRetriever(store=store)).index(demo_docs).save(idx)
    store.close()
    shutil.copytree(idx, root / "idx.orig")
    shutil.copytree(qp, root / "qdrant.orig")
    return root, idx, qp


@pytest.fixture()
def qdrant_index(qdrant_built) -> tuple[Path, Path]:
    root, idx, qp = qdrant_built
    for live, orig in ((idx, root / "idx.orig"), (qp, root / "qdrant.orig")):
        shutil.rmtree(live, ignore_errors=True)
        shutil.copytree(orig, live)
    return idx, qp


def test_qdrant_backed_index_opens_and_searches(qdrant_index, capsys):
    idx, _ = qdrant_index
    assert main(["search", str(idx), QUERY, "-k", "3"]) == 0
    assert "jupiter" in capsys.readouterr().out


QDRANT_FILES = {"meta": "meta.json", "storage": "collection/notes/storage.sqlite"}


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("which", sorted(QDRANT_FILES))
def test_damaged_qdrant_file_is_one_line(qdrant_index, which, how, capsys):
    idx, qp = qdrant_index
    target = qp / QDRANT_FILES[which]
    damage(target, how)
    rc = main(["search", str(idx), QUERY])
    err = capsys.readouterr().err
    one_line_naming(rc, err, target.name)
    assert str(qp) in err  # the folder to delete before the repair


def test_qdrant_collection_changed_by_another_client_is_one_line(qdrant_index, capsys):
    idx, qp = qdrant_index
    other = QdrantStore(path=str(qp), collection="notes")
    other.delete(["jupiter"])
    other.close()
    rc = main(["search", str(idx), QUERY])
    one_line_naming(rc, capsys.readouterr().err, "storage.sqlite")


def test_qdrant_folder_deleted_then_repaired(qdrant_index, capsys):
    idx, qp = qdrant_index
    shutil.rmtree(qp)
    rc = main(["search", str(idx), QUERY])
    one_line_naming(rc, capsys.readouterr().err, "meta.json")
    assert main(["index", "--repair", str(idx)]) == 0  # the message's fix works
    assert main(["search", str(idx), QUERY, "-k", "3"]) == 0
    assert "jupiter" in capsys.readouterr().out


def test_dense_retriever_over_a_filled_collection_is_never_a_silent_empty(qdrant_index):
    _, qp = qdrant_index
    fresh = DenseRetriever(store=QdrantStore(path=str(qp), collection="notes"))
    with pytest.raises(ConfigError) as e:
        fresh.retrieve(QUERY)
    assert "\n" not in str(e.value) and "24 points" in str(e.value)
    fresh.store.close()


# -- a running server ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_damaged_documents_under_a_running_server_are_a_logged_500(tmp_path, demo_docs, how,
                                                                   caplog):
    from fastapi.testclient import TestClient

    from rag.app.server import create_app

    idx = tmp_path / "idx"
    pipe = Pipeline(retriever=BM25Retriever()).index(demo_docs[:12])
    pipe.save(idx)
    pipe.index(demo_docs[12:])  # a second document segment
    pipe.close()
    client = TestClient(create_app(Pipeline.open(idx, read_only=True), auth=False,
                                   read_only=True))
    seg = sorted(idx.glob("*.docs"))[-1]
    text = demo_docs[12].text  # the first document of the damaged (second) segment
    data = seg.read_bytes()  # its bytes come first in the segment file
    seg.write_bytes(data[:10] if how == "truncated" else b"k" + data[1:])
    with caplog.at_level(logging.ERROR, logger="ragnodes.server"):
        r = client.post("/search", json={"query": text, "k": 1})
    assert r.status_code == 500 and seg.name in r.json()["message"]
    assert any(seg.name in rec.getMessage() for rec in caplog.records)
    # the server keeps serving what is intact
    assert client.get("/health").status_code == 200
    ok = client.post("/search", json={"query": demo_docs[0].text, "k": 1})
    assert ok.status_code == 200 and ok.json()["hits"][0]["document"]["id"] == demo_docs[0].id




def test_read_only_server_keeps_serving_when_a_newer_generation_is_damaged(tmp_path, demo_docs,
                                                                          caplog):
    from fastapi.testclient import TestClient

    from rag.app.server import create_app

    idx = tmp_path / "idx"
    Pipeline(retriever=BM25Retriever()).index(demo_docs[:12]).save(idx)
    ro = TestClient(create_app(Pipeline.open(idx, read_only=True), auth=False, read_only=True))
    writer = Pipeline.open(idx)
    writer.index([{"id": "ceres", "text": "Ceres dwarf planet asteroid belt"}])
    writer.close()
    newest = sorted(idx.glob("*.docs"))[-1]
    damage(newest, "flipped")
    with caplog.at_level(logging.ERROR, logger="ragnodes.server"):
        for _ in range(3):
            r = ro.post("/search", json={"query": demo_docs[0].text, "k": 1})
            assert r.status_code == 200  # the generation it has
    logged = [rec.getMessage() for rec in caplog.records if newest.name in rec.getMessage()]
    assert len(logged) == 1  # once, not per search


def test_every_write_path_commits_the_token_store(tmp_path, demo_docs):
    """`rag index --config` with a late-interaction reranker, then `POST /documents`: both reach
    the token store, in the commit."""
    import json

    from fastapi.testclient import TestClient

    from rag.app.server import create_app

    cfg = tmp_path / "pipe.json"
    rr = LateInteractionReranker(encoder=TokenEncoder(precision="fp32"), cache_size=0)
    cfg.write_text(json.dumps(Pipeline(retriever=BM25Retriever(), rerankers=[rr]).to_config()))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n"
                              for d in demo_docs[:8]), encoding="utf-8")
    idx = tmp_path / "idx"
    assert main(["index", str(corpus), "--config", str(cfg), "--out", str(idx)]) == 0
    assert list(idx.glob("*.tok")) and not (idx / "rerank0").exists()
    assert Pipeline.open(idx).rerankers[0].token_store.count() == 8
    client = TestClient(create_app(Pipeline.open(idx), auth=False))
    r = client.post("/documents", json={"documents": [{"id": "ceres", "text": "Ceres"}]})
    assert r.status_code == 200
    store = Pipeline.open(idx).rerankers[0].token_store
    assert store.count() == 9 and store._row.get("ceres") is not None


@pytest.mark.parametrize("how", ["deleted", pytest.param("truncated", marks=pytest.mark.slow)])
def test_qdrant_hybrid_local_folder_is_checked_on_open(tmp_path, demo_docs, how, capsys):
    from retrievers import QdrantHybridRetriever

    qp, idx = tmp_path / "qdrant", tmp_path / "idx"
    r = QdrantHybridRetriever(path=str(qp), collection="notes")
    Pipeline(retriever=r).index(demo_docs[:8]).save(idx)
    r.close()
    capsys.readouterr()  # the model-loading progress of the build
    target = qp / ("meta.json" if how == "deleted" else "collection/notes/storage.sqlite")
    damage(target, how)
    one_line_naming(main(["search", str(idx), QUERY]), capsys.readouterr().err, target.name)
