"""Chunks of your files handed to LangChain and LlamaIndex with their source relationships kept:
a LlamaIndex node's ``ref_doc_id`` (its ``SOURCE`` relationship) is the chunk's parent document,
a LangChain document keeps ``parent_id``, ``source``, the span and the heading path in
``metadata``. Coming back, :func:`rag.pipeline.parents.parent_of` reads ``ref_doc_id`` too, so
chunks split by LlamaIndex's own node parsers group into documents the same way.

>>> nodes = to_llama_nodes(Chunker().split(load_paths(["notes/"]).documents))  # doctest: +SKIP
>>> nodes[0].ref_doc_id                                                           # doctest: +SKIP
'planets.md'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag.core.extras import require
from rag.core.types import Document


def to_langchain_documents(chunks: Sequence[Document]) -> list[Any]:
    """LangChain ``Document`` s (id = chunk id; metadata with ``parent_id``, ``source``,
    ``start``/``end``, ``headings`` and the contextual header as ``title``)."""
    from rag.ingest.frameworks import out_metadata

    lc = require("langchain_core.documents", feature="LangChain ingestion")
    return [lc.Document(page_content=c.text, metadata=out_metadata(c), id=c.id) for c in chunks]


def to_llama_nodes(chunks: Sequence[Document]) -> list[Any]:
    """LlamaIndex ``TextNode`` s whose ``SOURCE`` relationship (``ref_doc_id``) is the parent
    document and whose ``PREVIOUS`` / ``NEXT`` point at the neighbouring chunks."""
    from rag.ingest.frameworks import out_metadata

    schema = require("llama_index.core.schema", feature="LlamaIndex ingestion")
    rel = schema.NodeRelationship
    ids = {c.id for c in chunks}
    nodes = []
    for c in chunks:
        m = c.metadata
        parent = str(m.get("parent_id", c.id))
        rels = {rel.SOURCE: schema.RelatedNodeInfo(node_id=parent)}
        if "chunk" in m:
            for key, n in ((rel.PREVIOUS, int(m["chunk"]) - 1), (rel.NEXT, int(m["chunk"]) + 1)):
                if f"{parent}#{n}" in ids:
                    rels[key] = schema.RelatedNodeInfo(node_id=f"{parent}#{n}")
        nodes.append(
            schema.TextNode(id_=c.id, text=c.text, metadata=out_metadata(c), relationships=rels)
        )
    return nodes
