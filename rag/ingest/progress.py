"""Progress of ``rag index`` on stderr: files read, chunks made, chunks embedded and committed.

On a terminal it is one ``tqdm`` bar over the files with the chunk counts beside it; otherwise
(a log, CI, a pipe) one plain line every ``interval`` seconds and a last one at the end, so a
long run is never silent and a log never fills with carriage returns.

>>> p = IndexProgress(stream=sys.stderr, tty=False)      # doctest: +SKIP
>>> p.files(3, 10); p.chunks(120); p.committed(100)     # doctest: +SKIP
indexing: 3/10 files read, 120 chunks, 100 embedded and committed (0.4s)
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class IndexProgress:
    """Counters with a display (see the module docstring).

    Args:
        stream: where lines go (default ``sys.stderr``).
        tty: a bar (``True``) or periodic lines (``False``); default: whether ``stream`` is a
            terminal.
        interval: seconds between plain lines.
    """

    def __init__(
        self, stream: TextIO | None = None, tty: bool | None = None, interval: float = 5.0
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = tty if tty is not None else bool(isatty and isatty())
        self.interval = interval
        self.n_files, self.total_files, self.n_chunks, self.n_committed = 0, 0, 0, 0
        self.t0 = time.perf_counter()
        self._last = self.t0 - interval  # the first update is shown at once
        self._bar: Any = None

    def line(self) -> str:
        return (
            f"indexing: {self.n_files}/{self.total_files} files read, {self.n_chunks} chunks, "
            f"{self.n_committed} embedded and committed ({time.perf_counter() - self.t0:.1f}s)"
        )

    def files(self, done: int, total: int) -> None:
        self.n_files, self.total_files = done, total
        self._show()

    def chunks(self, n: int) -> None:
        self.n_chunks += n
        self._show()

    def committed(self, n: int) -> None:
        self.n_committed += n
        self._show()

    def _idle(self) -> bool:
        """Nothing found yet: no line is worth printing (a run that fails on its input says only
        its one error line)."""
        return not (self.total_files or self.n_chunks or self.n_committed)

    def _show(self, force: bool = False) -> None:
        if self._idle():
            return
        if self.tty:
            if self._bar is None:
                from tqdm.auto import tqdm

                self._bar = tqdm(
                    total=self.total_files,
                    desc="indexing",
                    unit="file",
                    file=self.stream,
                    leave=False,
                )
            self._bar.total = self.total_files
            self._bar.n = self.n_files
            self._bar.set_postfix(chunks=self.n_chunks, committed=self.n_committed, refresh=True)
            return
        now = time.perf_counter()
        if force or now - self._last >= self.interval:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif not self.tty and not self._idle():
            print(self.line(), file=self.stream, flush=True)


class NoProgress(IndexProgress):
    """Shows nothing (library calls of :func:`rag.ingest.indexing.index_paths`)."""

    def _show(self, force: bool = False) -> None:
        pass

    def close(self) -> None:
        pass
