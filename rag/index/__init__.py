"""The index layer: one document store, immutable segments, an atomic manifest, one writer."""

from rag.index.docstore import DocumentStore
from rag.index.files import WriterLock, atomic_write_bytes, crash_point, write_durable
from rag.index.folder import Commit, IndexFolder, is_index
from rag.index.io import commit_index, write_index
from rag.index.leases import Lease
from rag.index.opening import open_index
from rag.index.session import IndexSession

__all__ = [
    "Commit",
    "DocumentStore",
    "IndexFolder",
    "IndexSession",
    "Lease",
    "WriterLock",
    "atomic_write_bytes",
    "commit_index",
    "crash_point",
    "is_index",
    "open_index",
    "write_durable",
    "write_index",
]
