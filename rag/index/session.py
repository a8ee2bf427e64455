"""An index session: one process's view of one index folder, apart from query composition.

:class:`IndexSession` owns what :class:`rag.pipeline.Pipeline` used to do besides composing
queries: the folder, the generation it reads (pinned by a reader lease, :mod:`rag.index.leases`),
the writer lock, refresh, commits with their cursors, and closing. ``Pipeline.open/index/delete/
compact/save/refresh`` delegate here; the server takes the writer lock through
:meth:`IndexSession.acquire`, never through a private attribute.

Every node's state commits through one hook pair into the one manifest: a node in the ``nodes``
mapping given to :meth:`~IndexSession.commit` (the retriever as ``"r"``, the pipeline's rerankers
as ``"rerank0"``, ``"rerank1"``...) writes its files with ``_commit_state(commit, part) -> state``
and reopens them with ``_open_state(folder, state)`` (defaults in
:class:`rag.core.nodes.BaseRetriever` and :class:`rag.core.nodes.BaseReranker`; a stateless reranker
returns ``None``). The retriever's state sits under the manifest's ``state``, the others' under
``nodes``, so a query reads nothing the commit did not name and check.

Writing, for code that fills an index folder without a pipeline (parallel encoders, a Ray job):
build the nodes, then commit them in order through one session, which is the one writer::

    session = IndexSession(path)                      # a new or existing folder
    session.acquire()                                 # the writer lock (IndexLockedError if held)
    retriever.index(batch)                            # change the nodes in memory ...
    session.commit({"r": retriever}, cursor=("corpus.jsonl", 10_000))   # ... durable on return
    session.close()

``commit`` writes only what changed since the previous commit (new document, postings, vector and
token segments; tombstones), records the cursor in the same manifest, and is atomic: a crash
leaves the previous generation. ``Pipeline.index(docs, cursor=...)`` is the same through a
pipeline (it adds the rerankers' nodes).

Reading: :meth:`~IndexSession.open` reads the manifest, pins its files with a lease, verifies them
and hands the body to a ``build`` function that returns the value and its nodes; it retries on
the newest generation when a writer committed meanwhile (a reader never fails because of a
commit), and verifies checksums only of files it has not verified before (files are immutable),
so following a writer costs the new files, not the index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from rag.core.errors import ConfigError, IndexCorruptError
from rag.index.docstore import DocumentStore
from rag.index.folder import MANIFEST, IndexFolder, check_not_orphaned
from rag.index.io import commit_index
from rag.index.leases import Lease

T = TypeVar("T")
OPEN_TRIES = 20  # commits racing one open, at most, before it gives up (each retry is cheap)


class IndexSession:
    """One index folder as seen by this process (see the module docstring).

    Args:
        path: the index folder (it need not exist yet for a writer).
        read_only: refuse writes (:meth:`acquire` raises); a reader takes no lock.
    """

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False) -> None:
        self.folder = IndexFolder(path)
        self.read_only = read_only
        self.lease: Lease | None = None
        self._stamp: tuple[int, int] | None = None
        self._verified: dict[str, str] = {}  # name -> sha256 already checked in this process

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The body of the generation this session reads (or last committed)."""
        return self.folder.manifest

    @property
    def generation(self) -> int:
        return self.folder.generation

    @property
    def writing(self) -> bool:
        """Whether this session holds the writer lock."""
        return self.folder.lock.held

    def cursor(self, source: str) -> Any:
        """The committed cursor of ``source`` (``None`` if there is none)."""
        return ((self.manifest or {}).get("cursors") or {}).get(source)

    # -- reading ----------------------------------------------------------------------------------
    def open(self, build: Callable[[dict[str, Any]], tuple[T, Mapping[str, Any]]],
             checksums: bool = True) -> T:
        """Open the newest generation: ``build(body) -> (value, nodes)`` makes the nodes from the
        manifest (``nodes["r"]`` the retriever, the others by part name); their documents and
        states are attached here. Returns ``value``. A generation replaced while it is being
        opened is dropped for the newer one."""
        for _ in range(OPEN_TRIES):
            stamp = self.folder.stamp()
            body = self.folder.read_manifest()
            if body is None:
                check_not_orphaned(self.path)
                raise ConfigError(
                    f"{str(self.path)!r} is not a saved index (no {MANIFEST}); run `rag index` "
                    "first"
                )
            self._pin(body, keep_old=True)
            if self.folder.stamp() != stamp:
                continue  # committed between our read and our lease: the writer may miss it
            try:
                self._verify(body, checksums)
                value, nodes = build(body)
                self._attach(body, nodes)
            except (IndexCorruptError, FileNotFoundError) as e:
                if self._moved_on(body):
                    continue  # an old generation (a lease-less reader, or a writer's own)
                if isinstance(e, FileNotFoundError):
                    raise IndexCorruptError(
                        f"index {str(self.path)!r}: file {e.filename} is missing; "
                        f"run `rag index --repair {self.path}` or re-ingest the corpus"
                    ) from None
                raise
            self.folder.manifest, self._stamp = body, stamp
            self._pin(body, keep_old=False)
            return value
        raise IndexCorruptError(
            f"index {str(self.path)!r} kept changing while being opened ({OPEN_TRIES} commits); "
            "try again"
        )

    def _moved_on(self, body: dict[str, Any]) -> bool:
        try:
            again = self.folder.read_manifest()
        except IndexCorruptError:
            return False
        return again is not None and again["generation"] != body["generation"]

    def _pin(self, body: dict[str, Any], keep_old: bool) -> None:
        if self.writing:
            return  # the writer deletes nothing it reads
        if self.lease is None:
            self.lease = Lease(self.path)
        files = set(body["files"])
        if keep_old and self.manifest is not None:
            files |= set(self.manifest["files"])
        self.lease.pin(int(body["generation"]), files)

    def _verify(self, body: dict[str, Any], checksums: bool) -> None:
        known = self._verified if checksums else None
        self.folder.verify(body, checksums, known=known)
        if checksums:
            self._verified = {n: e["sha256"] for n, e in body["files"].items()}

    def _attach(self, body: dict[str, Any], nodes: Mapping[str, Any]) -> None:
        """Attach the document store and open every node's state (files already verified)."""
        store = DocumentStore.open(self.path, body["docs"])
        store.folder = self.path  # type: ignore[attr-defined]
        retriever = nodes["r"]
        retriever._share_documents(store)
        retriever._open_state(self.path, body["state"])
        states = body.get("nodes") or {}
        for part, node in nodes.items():
            if part != "r":
                node._open_state(self.path, states.get(part))

    def changed(self) -> bool:
        """Whether a newer generation was committed since this session read (one ``stat``; a
        replaced manifest of the same generation only updates the stamp)."""
        stamp = self.folder.stamp()
        if stamp == self._stamp:
            return False
        try:
            body = self.folder.read_manifest()
        except IndexCorruptError:
            return True  # let the reopen say what is wrong
        if body is not None and body["generation"] == self.generation:
            self._stamp = stamp
            return False
        return body is not None

    # -- writing ----------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the writer lock (once): another writer, or a read-only session, is a one-line
        error, before anything is applied."""
        if self.read_only:
            raise ConfigError(
                f"index {str(self.path)!r} is open read-only (e.g. `rag serve --read-only`): "
                "send writes to the writer process, or open it without read_only to write"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.folder.acquire()
        if self.lease is not None:  # the writer reads its own commits
            self.lease.release()

    def commit(
        self,
        nodes: Mapping[str, Any],
        pipeline: dict[str, Any] | None = None,
        cursor: tuple[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Commit the nodes' current state (``nodes["r"]``: the retriever) as the next
        generation, with ``pipeline`` (the config to store; ``None`` keeps the stored one) and
        ``cursor=(source, value)`` recorded in the same manifest. Durable when it returns."""
        self.acquire()
        cursors = dict((self.manifest or {}).get("cursors") or {})
        if cursor is not None:
            value = cursor[1]
            cursors[cursor[0]] = int(value) if isinstance(value, (int, float)) else value
        others = {k: v for k, v in nodes.items() if k != "r"}
        body = commit_index(self.folder, nodes["r"], pipeline=pipeline, cursors=cursors,
                            nodes=others)
        self._stamp = self.folder.stamp()
        self._verified = {n: e["sha256"] for n, e in body["files"].items()}
        return body

    def release_lock(self) -> None:
        """Give up the writer lock (the session keeps reading its generation)."""
        self.folder.close()

    def close(self) -> None:
        """Release the writer lock and the reader lease."""
        self.folder.close()
        if self.lease is not None:
            self.lease.release()
