"""Opening an index folder: verify it, rebuild its retriever from the manifest's config (through
the node registry, which is why this module sits above :mod:`rag.nodes` while writing,
:mod:`rag.index.io`, sits below it) and attach the one document store."""

from __future__ import annotations

import os
from typing import Any

from rag.index.docstore import DocumentStore
from rag.index.folder import IndexFolder


def open_index(path: str | os.PathLike[str], checksums: bool = True) -> tuple[Any, IndexFolder]:
    """The retriever of the index at ``path`` (verified) and its :class:`IndexFolder`."""
    from rag.nodes import Node

    folder = IndexFolder(path)
    body = folder.load(checksums)
    retriever: Any = Node.from_config(body["config"])
    store = DocumentStore.open(folder.path, body["docs"])
    store.folder = folder.path  # type: ignore[attr-defined]
    retriever._share_documents(store)
    retriever._open_state(folder.path, body["state"])
    return retriever, folder
