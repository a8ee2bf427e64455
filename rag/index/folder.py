"""An index folder: one manifest naming the current generation, immutable files, one writer.

Layout::

    manifest.json          {"manifest": {...}, "sha256": <of the canonical body>}
    g000003-1-docs.docs    a document segment written in generation 3 (rag.index.docstore)
    g000003-2-r0.bm25      a retriever's own files (BM25 postings, vectors, a snapshot folder)
    writer.lock            the writer's fcntl lock

The manifest body holds the ``generation``, the retriever (and pipeline) config, every live file
with its size and sha256, the document store's segments and tombstones, each retriever's own
state and the ingestion ``cursors``. A commit writes new files (temp -> fsync -> rename), fsyncs
the folder, then replaces ``manifest.json`` the same way: the rename is the commit point (the
``segments_N`` protocol of Lucene). A crash before it leaves the previous generation intact (its
files are never rewritten; the new ones are orphans removed by the next writer); after it, files
no longer named are deleted once no live reader needs them: a reader pins the generation it
opened with a lease (:mod:`rag.index.leases`, Lucene's ``IndexDeletionPolicy``), and files retired
less than ``$RAG_INDEX_GRACE_S`` seconds ago (default 0) are kept too, for readers that cannot
write a lease. Opening verifies every named file (size and sha256); any mismatch is an
:class:`~rag.core.errors.IndexCorruptError` naming the file and the repair command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, IndexCorruptError
from rag.index.files import (
    LOCK_FILE,
    WriterLock,
    atomic_write_bytes,
    crash_point,
    file_digest,
    fsync_dir,
    write_durable,
)

MANIFEST = "manifest.json"
FORMAT = "ragnodes-index/1"
GRACE_ENV = "RAG_INDEX_GRACE_S"


def grace_seconds() -> float:
    """How long a file no longer named by the manifest is kept for lease-less readers."""
    try:
        return max(0.0, float(os.environ.get(GRACE_ENV, "0") or 0))
    except ValueError:
        raise ConfigError(f"${GRACE_ENV} must be a number of seconds") from None


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def repair_hint(folder: Path) -> str:
    return f"run `rag index --repair {folder}` or re-ingest the corpus"


def is_index(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / MANIFEST).exists()


MMAP_MIN = 64 << 20  # arrays at least this large are memory-mapped, smaller ones read


class PackBytes:
    """A byte range of a pack file read on demand with ``pread`` (no memory map: a file truncated
    or damaged under a running process is an :class:`IndexCorruptError` naming it, never a
    SIGBUS). Slicing returns ``bytes``."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        self.path, self.offset, self.length = path, offset, length
        self._fd: int | None = os.open(path, os.O_RDONLY)  # survives the file's deletion

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, span: slice) -> bytes:
        start, stop, _ = span.indices(self.length)
        want = max(0, stop - start)
        assert self._fd is not None
        got = os.pread(self._fd, want, self.offset + start)
        if len(got) != want:
            raise IndexCorruptError(
                f"index {str(self.path.parent)!r}: file {self.path.name} was truncated while "
                f"in use ({os.fstat(self._fd).st_size} bytes); {repair_hint(self.path.parent)}"
            )
        return got

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None


def read_pack(path: Path, layout: dict[str, Any], lazy: tuple[str, ...] = (),
              mmap_min: int = MMAP_MIN) -> dict[str, Any]:
    """The arrays of a :meth:`Commit.put_pack` file: each at least ``mmap_min`` bytes
    memory-mapped (read-only), smaller ones read into memory, and the keys in ``lazy`` as
    :class:`PackBytes` (read on demand). The file's size is checked against the layout first, so
    a short file is an :class:`IndexCorruptError` naming it, never a SIGBUS on a mapped page."""
    size = path.stat().st_size
    out: dict[str, Any] = {}
    for key, spec in layout.items():
        shape = tuple(spec["shape"])
        dtype = np.dtype(spec["dtype"])
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if spec["offset"] + nbytes > size:
            raise IndexCorruptError(
                f"index {str(path.parent)!r}: file {path.name} is truncated ({size} bytes, its "
                f"layout needs {spec['offset'] + nbytes}); {repair_hint(path.parent)}"
            )
        if key in lazy:
            out[key] = PackBytes(path, spec["offset"], nbytes)
        elif nbytes == 0:
            out[key] = np.zeros(shape, dtype=dtype)
        elif nbytes >= mmap_min:
            out[key] = np.memmap(path, dtype=dtype, mode="r", offset=spec["offset"], shape=shape)
        else:
            with open(path, "rb") as f:
                f.seek(spec["offset"])
                out[key] = np.frombuffer(f.read(nbytes), dtype=dtype).reshape(shape)
    return out


def check_not_orphaned(path: Path) -> None:
    """Index files without a manifest: the manifest was lost; say so (not "no index here")."""
    if path.is_dir() and any(p.name.startswith("g0") for p in path.iterdir()):
        raise IndexCorruptError(
            f"index {str(path)!r}: file {MANIFEST} is missing; re-ingest the corpus "
            f"(`rag index CORPUS --out {path} --overwrite`)"
        )


class Commit:
    """The files of one generation being written: new ones (``put_*``) and kept ones."""

    def __init__(self, folder: Path, generation: int, previous: dict[str, Any]) -> None:
        self.folder, self.generation = folder, generation
        self.previous = previous  # name -> entry of the current generation's files
        self.files: dict[str, dict[str, Any]] = {}
        self._names = 0

    def new_name(self, part: str) -> str:
        """A fresh file-name stem in this generation (``g000004-3-docs``)."""
        self._names += 1
        return f"g{self.generation:06d}-{self._names}-{part}"

    def has(self, name: str) -> bool:
        return name in self.previous

    def keep(self, name: str) -> None:
        """Name a file of the current generation in the new one, unchanged."""
        if name not in self.previous:
            raise ConfigError(f"cannot keep {name}: not a file of the current generation")
        self.files[name] = self.previous[name]

    def put_bytes(self, name: str, data: bytes | memoryview) -> None:
        self.files[name] = write_durable(self.folder / name, data)

    def put_array(self, name: str, array: np.ndarray) -> None:
        import io

        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        self.put_bytes(name, buf.getbuffer())

    def put_pack(self, name: str, parts: dict[str, np.ndarray | bytes]) -> dict[str, Any]:
        """Write several arrays as one file (one fsync); returns the layout for the manifest,
        read back with :func:`read_pack`."""
        layout: dict[str, Any] = {}
        chunks, offset = [], 0
        for key, part in parts.items():
            a = np.frombuffer(part, dtype=np.uint8) if isinstance(part, bytes) else \
                np.ascontiguousarray(part)
            pad = (-offset) % 64  # aligned, so that a memory map of each part is aligned too
            chunks.append(b"\0" * pad)
            offset += pad
            layout[key] = {"offset": offset, "dtype": a.dtype.str, "shape": list(a.shape)}
            chunks.append(a.tobytes())
            offset += a.nbytes
        self.put_bytes(name, b"".join(chunks))
        return layout

    def put_tree(self, name: str) -> None:
        """Register every file under the folder ``name`` (written by a node's ``save``)."""
        root = self.folder / name
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != LOCK_FILE:
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
                rel = p.relative_to(self.folder).as_posix()
                self.files[rel] = {"bytes": p.stat().st_size, "sha256": file_digest(p)}
        for d in sorted({p.parent for p in root.rglob("*")} | {root}):
            fsync_dir(d)


class IndexFolder:
    """Read, verify and commit the generations of one index folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock = WriterLock(self.path)
        self.manifest: dict[str, Any] | None = None

    def stamp(self) -> tuple[int, int] | None:
        """``(inode, mtime_ns)`` of the manifest: changes with every commit (a rename), so a
        reader can tell cheaply whether to re-open."""
        try:
            st = os.stat(self.path / MANIFEST)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    @property
    def generation(self) -> int:
        return int(self.manifest["generation"]) if self.manifest else 0

    # -- reading --------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        """The verified manifest body, or ``None`` when the folder holds no index yet."""
        f = self.path / MANIFEST
        if not f.exists():
            return None
        where = f"index {str(self.path)!r}: {MANIFEST}"
        fix = f"re-ingest the corpus (`rag index CORPUS --out {self.path} --overwrite`)"
        try:
            outer = json.loads(f.read_bytes())
            body, digest = outer["manifest"], outer["sha256"]
        except (ValueError, KeyError, TypeError):
            raise IndexCorruptError(f"{where} is not a valid manifest; {fix}") from None
        if hashlib.sha256(_canonical(body)).hexdigest() != digest:
            raise IndexCorruptError(f"{where} fails its checksum; {fix}")
        if body.get("format") != FORMAT:
            raise IndexCorruptError(f"{where} has format {body.get('format')!r}, not {FORMAT}")
        return dict(body)

    def verify(self, body: dict[str, Any], checksums: bool = True,
               known: dict[str, str] | None = None) -> list[str]:
        """Check every named file; raise on the first mismatch (``checksums=False``: sizes only;
        ``known``: name -> sha256 already verified in this process, whose contents are only
        size-checked again, since files are immutable). Returns the file names."""
        known = known or {}
        for name, entry in body["files"].items():
            p = self.path / name
            problem = None
            if not p.exists():
                problem = "is missing"
            else:
                size = p.stat().st_size
                if size != entry["bytes"]:
                    kind = "emptied" if size == 0 else ("truncated" if size < entry["bytes"]
                                                        else "longer than written")
                    problem = f"is {kind} ({size} bytes, the manifest says {entry['bytes']})"
                elif (checksums and known.get(name) != entry["sha256"]
                      and file_digest(p) != entry["sha256"]):
                    problem = "does not match its checksum (changed after it was written)"
            if problem:
                raise IndexCorruptError(
                    f"index {str(self.path)!r}: file {name} {problem}; {repair_hint(self.path)}"
                )
        return list(body["files"])

    def load(self, checksums: bool = True) -> dict[str, Any]:
        """Read and verify the current generation (retrying if a writer replaced it meanwhile)."""
        for _ in range(5):
            body = self.read_manifest()
            if body is None:
                raise ConfigError(
                    f"{str(self.path)!r} is not a saved index (no {MANIFEST}); "
                    "run `rag index` first"
                )
            try:
                self.verify(body, checksums)
            except IndexCorruptError:
                again = self.read_manifest()
                if again is not None and again["generation"] != body["generation"]:
                    continue  # a writer committed and removed the old files: read the new one
                raise
            self.manifest = body
            return body
        raise IndexCorruptError(f"index {str(self.path)!r} keeps changing while being opened")

    # -- writing --------------------------------------------------------------------------------
    def begin(self) -> Commit:
        """Take the writer lock (:meth:`acquire`) and start the next generation."""
        self.acquire()
        previous = self.manifest["files"] if self.manifest else {}
        return Commit(self.path, self.generation + 1, previous)

    def acquire(self) -> None:
        """Take the writer lock (once). A manifest that another writer replaced since this
        folder was read is an error (re-open to see its changes)."""
        if not self.lock.held:
            self.lock.acquire()
            current = self.read_manifest()
            mine = self.manifest["generation"] if self.manifest else None
            theirs = current["generation"] if current else None
            if current is not None and mine is not None and theirs != mine:
                self.lock.release()
                raise ConfigError(
                    f"index {str(self.path)!r} changed on disk since it was opened (generation "
                    f"{mine} -> {theirs}); open it again before writing"
                )
            if current is not None and mine is None:
                self.manifest = current
            self.remove_orphans()

    def commit(self, commit: Commit, state: dict[str, Any]) -> dict[str, Any]:
        """Make ``commit`` the current generation: ``state`` holds ``config``, ``docs``, ...."""
        crash_point("before-fsync")
        fsync_dir(self.path)
        body = {"format": FORMAT, "generation": commit.generation, "files": commit.files, **state}
        grace = grace_seconds()
        if grace:  # files this commit stops naming, with when: kept for lease-less readers
            now = time.time()
            old = self.manifest or {}
            retired = {n: t for n, t in old.get("retired", {}).items()
                       if now - t < grace and n not in commit.files}
            retired.update({n: now for n in old.get("files", {}) if n not in commit.files})
            body["retired"] = retired
        outer = {"manifest": body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()}
        crash_point("before-manifest")
        atomic_write_bytes(self.path / MANIFEST, json.dumps(outer).encode("utf-8"))
        self.manifest = body
        crash_point("after-manifest")
        self.remove_orphans()
        return body

    def remove_orphans(self) -> None:
        """Delete files and folders the current manifest does not name (old generations, a
        crashed commit's leftovers), except those a live reader's lease pins and those retired
        within the grace period. Only the lock holder calls this."""
        from rag.index.leases import pinned_files

        body = self.manifest or {}
        live = set(body.get("files", {}))
        grace = grace_seconds()
        now = time.time()
        live |= {n for n, t in body.get("retired", {}).items() if now - t < grace}
        live |= pinned_files(self.path)
        tops = {n.split("/", 1)[0] for n in live}
        for p in self.path.iterdir():
            if p.name in (MANIFEST, LOCK_FILE) or p.name in tops and p.is_file():
                continue
            if not p.name.startswith(("g0", ".")):
                continue  # not ours (a legacy index's files, a user's notes): leave it
            if p.is_dir():
                if p.name in tops:
                    for q in sorted(p.rglob("*"), reverse=True):
                        rel = q.relative_to(self.path).as_posix()
                        if q.is_file() and rel not in live:
                            q.unlink()
                else:
                    shutil.rmtree(p)
            elif p.name not in live:
                p.unlink()

    def close(self) -> None:
        self.lock.release()
