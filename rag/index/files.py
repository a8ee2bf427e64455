"""The one durable writer of the index layer: temp file -> fsync -> rename -> fsync(dir).

Every file ragnodes writes for an index goes through :func:`write_durable` (immutable segment
files) or :func:`atomic_write_bytes` (the manifest, configs): a crash leaves either the old file or
the new one, never a half-written one (the POSIX rename protocol of Pillai et al., "All File
Systems Are Not Created Equal", OSDI 2014). :func:`crash_point` lets tests SIGKILL a writer at a
named step (``RAG_CRASH_AT=after-docs``) to check exactly that.

>>> entry = write_durable(Path(tmp) / "a.bin", b"abc")          # doctest: +SKIP
>>> entry["bytes"], entry["sha256"][:8]                          # doctest: +SKIP
(3, 'ba7816bf')
"""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from rag.core.errors import IndexLockedError

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
