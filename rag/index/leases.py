"""Reader leases: which files of an index folder live readers still need.

A reader pins the generation it opened by writing a lease file, ``readers/<pid>-<n>.lease``,
that names every file of that generation; the writer deletes an old file only when no live
reader's lease names it and its grace period is over (:func:`pinned_files`). A lease whose process
is gone (the pid no longer runs, or runs a different process: its start time differs) is stale:
the writer ignores and removes it, so a reader killed with SIGKILL pins nothing for long.

This is the deletion policy of Lucene (``IndexDeletionPolicy``: a commit point is deleted only
when no reader holds it, and ``ExpirationTimeDeletionPolicy``'s grace period for readers that
cannot register, e.g. on NFS) and of SQLite's WAL mode (a checkpoint never overwrites pages a
reader's read mark still needs). The order of steps makes the race with a commit safe: a reader
reads the manifest, writes its lease, then reads the manifest again; if the generation changed in
between, the writer may have missed the lease, so the reader pins the newer generation instead
(:func:`rag.index.session.IndexSession.open` retries). The writer lists leases only after its new
manifest is in place, so a lease written before the reader's second read is always seen.

A reader that cannot write a lease (a read-only mount) still opens the index: it relies on the
grace period and on retrying the newest generation when a file vanishes.

>>> lease = Lease(folder)                       # doctest: +SKIP
>>> lease.pin(7, ["g000007-1-docs.docs", ...])  # doctest: +SKIP
>>> lease.release()                             # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

READERS = "readers"
SUFFIX = ".lease"
_counter = itertools.count(1)
_live: weakref.WeakSet[Lease] = weakref.WeakSet()


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``), to tell a reused pid apart; ``None``
    where there is no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counting after the comm field


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    return started is None or _start_time(pid) in (None, started)


class Lease:
    """One reader's pin on the files of the generation it reads (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / READERS / f"{os.getpid()}-{next(_counter)}{SUFFIX}"
        self.generation: int | None = None
        self.ok = True  # False once a lease could not be written (read-only folder)
        _live.add(self)

    def pin(self, generation: int, files: Iterable[str]) -> bool:
        """Name ``files`` (replacing what was pinned before); returns whether the lease is on
        disk. Written with a rename, so the writer never reads half a lease."""
        body = {"pid": os.getpid(), "started": _start_time(os.getpid()),
                "generation": generation, "files": sorted(files)}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(exist_ok=True)
            tmp.write_text(json.dumps(body), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            self.ok = False
            return False
        self.generation, self.ok = generation, True
        return True

    def release(self) -> None:
        """Drop the pin (the files may be deleted by the next commit)."""
        try:
            self.path.unlink()
        except OSError:
            pass
        self.generation = None

    def __del__(self) -> None:
        self.release()


@atexit.register
def _release_all() -> None:
    for lease in list(_live):
        lease.release()


def read_leases(folder: Path, remove_stale: bool = False) -> list[dict[str, Any]]:
    """The leases of live readers; stale ones (dead pid) are removed when ``remove_stale``."""
    out: list[dict[str, Any]] = []
    d = folder / READERS
    if not d.is_dir():
        return out
    for p in d.iterdir():
        if not p.name.endswith(SUFFIX):
            continue
        try:
            body = json.loads(p.read_text(encoding="utf-8"))
            pid = int(body["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours: neither pins nor is removed
        if _alive(pid, body.get("started")):
            out.append(body)
        elif remove_stale:
            try:
                p.unlink()
            except OSError:
                pass
    return out


def pinned_files(folder: Path) -> set[str]:
    """Every file a live reader's lease names (stale leases are removed on the way)."""
    return {f for body in read_leases(folder, remove_stale=True) for f in body.get("files", [])}
