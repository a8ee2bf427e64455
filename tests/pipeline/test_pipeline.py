"""The query-only ``Pipeline`` (``rag/pipeline/__init__.py``): built from a config (importing
``rag.pipeline`` registers every node type it composes), answering with citations that point at
its contexts, and warning when no stage uses a query's instruction. Its index transactions are
tested in ``tests/index/``, its stages in ``tests/nodes/``, the chunk context and parents here
beside it."""

from __future__ import annotations

import json

import pytest

from rag.core.errors import ConfigError
from rag.core.nodes import Node
from rag.core.types import Query
from rag.pipeline import Pipeline
from retrievers import BM25Retriever


def test_config_roundtrip_of_a_pipeline_yaml(tmp_path):
    import yaml

    cfg = {
        "type": "pipeline",
        "k": 3,
        "retriever": {
            "type": "hybrid",
            "retrievers": [{"type": "bm25", "k1": 1.2}, {"type": "dense", "fields": "text"}],
        },
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    pipe = Node.from_config(tmp_path / "p.yaml")
    assert isinstance(pipe, Pipeline)
    out = pipe.to_config()
    assert out["retriever"]["retrievers"][0]["k1"] == 1.2
    assert Node.from_config(json.loads(json.dumps(out))).to_config() == out
    with pytest.raises(ConfigError, match="unknown node type 'nope'.*known types:.*bm25"):
        Node.from_config({"type": "nope"})


def test_pipeline_answers_with_a_valid_citation(demo_docs, smollm):
    pipe = Pipeline(retriever=BM25Retriever(), generator=smollm, k=3).index(demo_docs)
    ans = pipe.ask("Why is Mars called the Red Planet?")
    assert ans.contexts and ans.contexts[0].id == "mars"
    context_ids = {h.id for h in ans.contexts}
    assert ans.citations and all(c.document_id in context_ids for c in ans.citations)
    assert set(ans.timings) == {"retrieve_s", "generate_s"}
    with pytest.raises(ConfigError, match="empty"):
        pipe.ask("  ")


def test_pipeline_warns_when_no_stage_uses_the_instruction(demo_docs):
    pipe = Pipeline(retriever=BM25Retriever(), k=2).index(demo_docs)
    with pytest.warns(UserWarning, match="no stage uses it"):
        pipe.search(Query(text="planets", instruction="only gas giants"))
