"""Opening an index folder: verify it, rebuild its retriever from the manifest's config (through
the node registry, which is why this module sits above :mod:`rag.core.nodes` while writing,
:mod:`rag.index.io`, sits below it) and attach the one document store. Through an
:class:`~rag.index.session.IndexSession`: the generation is pinned by a reader lease and a
commit racing the open is answered by opening the newer generation."""

from __future__ import annotations

import os
from typing import Any

from rag.index.folder import IndexFolder


def open_index(path: str | os.PathLike[str], checksums: bool = True) -> tuple[Any, IndexFolder]:
    """The retriever of the index at ``path`` (verified) and its :class:`IndexFolder`."""
    from rag.core.nodes import Node
    from rag.index.session import IndexSession

    session = IndexSession(path, read_only=True)

    def build(body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        retriever = Node.from_config(body["config"])
        return retriever, {"r": retriever}

    retriever = session.open(build, checksums)
    retriever._index_session = session  # keeps the lease as long as the retriever lives
    return retriever, session.folder
