"""The one durable writer of the index layer: temp file -> fsync -> rename -> fsync(dir).

Every file ragnodes replaces or publishes goes through this module, the only code of ``rag``,
``retrievers``, ``rerankers`` and ``prompts`` that renames files (``tests/test_one_writer.py``
checks that): :func:`write_durable` (immutable segment files), :func:`atomic_write_bytes` (the
manifest, configs), and :func:`publish` / :func:`write_array` for a file or folder that a library
writes by path (``np.save``, ``torch.onnx.export``, ``save_pretrained``: nodes' state, the
embedding cache, model caches). A crash leaves either the old file or the new one, never a
half-written one (the POSIX rename protocol of Pillai et al., "All File Systems Are Not Created
Equal", OSDI 2014). :func:`crash_point` lets tests SIGKILL a writer at a named step
(``RAG_CRASH_AT=after-docs``) to check exactly that.

Core (model caches, the embedding cache) sits below this layer and never imports it: the package
root hands :func:`publish` to :func:`rag.models.use_writer`.

>>> entry = write_durable(Path(tmp) / "a.bin", b"abc")          # doctest: +SKIP
>>> entry["bytes"], entry["sha256"][:8]                          # doctest: +SKIP
(3, 'ba7816bf')
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.errors import IndexLockedError

CRASH_ENV = "RAG_CRASH_AT"
LOCK_FILE = "writer.lock"


_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process here when ``$RAG_CRASH_AT`` names this point (crash tests only):
    ``after-docs`` kills at the first pass, ``after-docs:3`` at the third."""
    want = os.environ.get(CRASH_ENV)
    if not want or not want.startswith(name):
        return
    point, _, nth = want.partition(":")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a folder's entries (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: str | os.PathLike[str], data: bytes | memoryview) -> dict[str, Any]:
    """Write ``data`` to ``path`` via a fsynced temp file and a rename; returns the manifest
    entry ``{"bytes", "sha256"}``. The folder is not fsynced here (one fsync per commit)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            crash_point("in-file")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> dict[str, Any]:
    """:func:`write_durable` plus an fsync of the folder: the new file survives a power cut."""
    entry = write_durable(path, data)
    fsync_dir(Path(path).parent)
    return entry


def _fsync_tree(path: Path) -> None:
    """fsync a file, or every file and folder under a folder (what :func:`publish` renames)."""
    if not path.is_dir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        return
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in sorted({p.parent for p in path.rglob("*")} | {path}):
        fsync_dir(d)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def publish(target: str | os.PathLike[str], produce: Callable[[Path], object]) -> Path:
    """Make ``target`` (a file or a folder) atomically: ``produce(tmp)`` writes it at a temporary
    sibling path (same folder, same last suffix, so ``np.save``/``save_npz`` keep the name), which
    is fsynced (every file of a folder), renamed onto ``target`` and the folder fsynced. A crash
    leaves the old ``target`` or the new one; a folder another process published first is kept
    (the same cache entry made twice) and this copy dropped. Returns ``target``."""
    p = Path(target)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.tmp{p.suffix}")
    try:
        produce(tmp)
        _fsync_tree(tmp)
        try:
            os.replace(tmp, p)
        except OSError:
            if not (tmp.is_dir() and p.is_dir()):
                raise
            _remove(tmp)  # a non-empty folder is not replaced: the other writer's copy stays
    except BaseException:
        _remove(tmp)
        raise
    fsync_dir(p.parent)
    return p


def write_array(path: str | os.PathLike[str], array: Any) -> Path:
    """:func:`publish` one array as ``.npy`` (no pickles), whatever the file is named."""
    import numpy as np

    def produce(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)

    return publish(path, produce)


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class WriterLock:
    """One writer per index folder: an exclusive ``fcntl.flock`` on ``writer.lock``, held until
    :meth:`release` or the process ends (the kernel drops it on exit, also after SIGKILL)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        import fcntl

        if self._fd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            who = "another writer in this process" if owner == str(os.getpid()) else (
                f"another process (pid {owner})")
            raise IndexLockedError(
                f"index {str(self.folder)!r} is open for writing by {who}; stop it, or open "
                "this one read-only"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
