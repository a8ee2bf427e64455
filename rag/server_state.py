"""What the HTTP endpoints share (:mod:`rag.server`, :mod:`rag.openai_routes`): the pipeline,
its many-readers/one-writer lock, and the FastAPI dependency that hands it to an endpoint."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from rag.errors import RagError
from rag.extras import require

try:
    from fastapi import Depends, Request
except ImportError:
    require("fastapi", extra="serve", feature="the HTTP server")
    raise

WARM_QUERY = "warm up"
logger = logging.getLogger("ragnodes.server")


# -- state ----------------------------------------------------------------------------------------
class ReadWriteLock:
    """Many searches at once, or one index change. Not tied to threads: a streamed answer may
    acquire in one worker thread and release in another."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and self._readers == 0)
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class ServerState:
    """What the endpoints share: the pipeline, its lock, where to save after a change."""

    def __init__(
        self,
        pipeline: Any,
        save_to: str | os.PathLike[str] | None = None,
        read_only: bool = False,
    ) -> None:
        from rag.pipeline import Pipeline

        self.pipeline = pipeline if isinstance(pipeline, Pipeline) else Pipeline(retriever=pipeline)
        self.save_to = Path(save_to) if save_to is not None else None
        self.read_only = read_only
        self.lock = ReadWriteLock()
        self.refresh_error: str | None = None  # the last failed refresh (logged once)
        if save_to is not None and self.pipeline.folder != Path(save_to):
            self.pipeline.save(save_to, config=False)  # writes commit there from now on
        if self.pipeline.session is not None and not read_only:
            self.pipeline.session.acquire()  # one writer: a second server fails at startup

    def refresh(self) -> None:
        """A read-only server follows the writer: re-open when a newer generation is committed
        (its files are pinned by the reopened session's lease, and a commit racing the reopen is
        answered by opening the newer generation). A newer generation that cannot be opened (a
        damaged file) is logged in one line and the server keeps serving the one it has."""
        if self.read_only and self.pipeline.changed_on_disk():  # one stat per search
            with self.lock.writing():
                try:
                    if self.pipeline.refresh():
                        self.warm()
                except RagError as e:
                    now = str(e)
                    if now != self.refresh_error:  # once per distinct failure, not per search
                        logger.error("index refresh failed, serving the previous generation: %s",
                                     now)
                    self.refresh_error = now
                else:
                    self.refresh_error = None

    @property
    def size(self) -> int:
        return len(self.pipeline.retriever)

    def warm(self) -> None:
        """Run one search so that lazy state (models, an index rebuilt after a change) is built
        now, under the write lock or before serving, and never by concurrent readers."""
        if self.size:
            self.pipeline.search(WARM_QUERY, k=1)


def get_state(request: Request) -> ServerState:
    """Dependency: the :class:`ServerState` of the app serving this request."""
    return request.app.state.rag


State = Annotated[ServerState, Depends(get_state)]  # an endpoint's ``state: State`` parameter
