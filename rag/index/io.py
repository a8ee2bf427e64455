"""Write and open whole indexes: the document store plus each retriever's own state.

Every node with index-time state persists it through two hooks (defaults in
:class:`rag.core.nodes.BaseRetriever` and :class:`rag.core.nodes.BaseReranker`):
``_commit_state(commit, part) -> state`` writes (or keeps) its files in a
:class:`~rag.index.folder.Commit` and returns JSON for the manifest (``None``: no state);
``_open_state(folder, state)`` opens them. The retriever's state is the manifest's ``state``, the
other nodes' (a late-interaction reranker's token segments) are under ``nodes`` by part name. The
default snapshots ``_save_state`` into a fresh folder of the new generation; BM25 keeps segments and
appends. Documents are never part of a retriever's state: every retriever of an index (all children
of a hybrid) reads the one :class:`~rag.index.docstore.DocumentStore`.

>>> folder = write_index(BM25Retriever().index(docs), "idx")      # doctest: +SKIP
>>> retriever, folder = open_index("idx")                          # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rag.index.docstore import DocumentStore
from rag.index.files import crash_point
from rag.index.folder import IndexFolder


def store_for(retriever: Any, folder: IndexFolder) -> DocumentStore:
    """The retriever's documents as a store committed to ``folder`` (a copy unless the
    retriever's store already belongs to this folder)."""
    docs = retriever.documents
    if isinstance(docs, DocumentStore) and getattr(docs, "folder", None) == folder.path:
        return docs
    store = DocumentStore()
    for d in docs.values():
        store[d.id] = d
    return store


def commit_index(
    folder: IndexFolder,
    retriever: Any,
    pipeline: dict[str, Any] | None = None,
    cursors: dict[str, Any] | None = None,
    attach: bool = True,
    nodes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Commit the retriever's current documents and state, and the state of each of ``nodes``
    (part name -> node, e.g. ``{"rerank0": reranker}``), as the next generation of ``folder``;
    durable when it returns. ``attach`` makes the retriever read its documents from the
    committed store afterwards (what an index opened for writing does)."""
    commit = folder.begin()
    store = store_for(retriever, folder)
    docs_state = store.commit(commit)
    store.folder = folder.path  # type: ignore[attr-defined]
    crash_point("after-docs")
    state = retriever._commit_state(commit, "r")
    states = {}
    for part, node in (nodes or {}).items():
        got = node._commit_state(commit, part)
        if got is not None:
            states[part] = got
    crash_point("after-state")
    previous = folder.manifest or {}
    body = {
        "config": retriever.to_config(),
        "pipeline": pipeline if pipeline is not None else previous.get("pipeline"),
        "docs": docs_state,
        "state": state,
        "nodes": states,
        "cursors": cursors if cursors is not None else previous.get("cursors", {}),
    }
    out = folder.commit(commit, body)
    if attach:
        retriever._share_documents(store)
    return out


def write_index(
    retriever: Any, path: str | os.PathLike[str], pipeline: dict[str, Any] | None = None
) -> Path:
    """Save ``retriever`` (documents and state) as a new generation of the folder ``path``; the
    retriever itself is left as it was."""
    folder = IndexFolder(path)
    folder.path.mkdir(parents=True, exist_ok=True)
    try:
        commit_index(folder, retriever, pipeline, attach=False)
    finally:
        folder.close()
    return folder.path
