"""The pipeline: retriever -> rerankers -> compressors -> generator, as one configurable node.

>>> from retrievers import BM25Retriever
>>> p = Pipeline(retriever=BM25Retriever(), k=3)
>>> p.index(docs).search("largest planet").ids        # doctest: +SKIP
>>> p.ask("What is the largest planet?").citations    # doctest: +SKIP

``run_stages`` returns the ranking after every stage, which ``evals`` scores stage by stage.
A query's instruction that a stage cannot use is reported with a warning, never dropped silently.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import prompts
from rag.core import tracing
from rag.core.errors import NO_OUTPUT, ConfigError, GenerationError
from rag.core.nodes import (
    BaseReranker,
    BaseRetriever,
    Compressor,
    Generator,
    Node,
    Reranker,
    Retriever,
    candidate_depth,
    check_filter,
    check_k,
    check_query,
)
from rag.core.types import Answer, Document, Hit, Query, Ranking, TraceStep, fetch_documents
from rag.pipeline.citations import attribute, resolve
from rag.pipeline.demonstrations import Demonstration, demo_turns
from rag.pipeline.grounding import escape_source_text

ANSWER_STOPS = ("\n\n", "\n[")


def _steps() -> int | None:
    """Decoding steps the current request's token loop counted (:mod:`rag.core.concurrency`)."""
    from rag.core.concurrency import current_cancel

    cancel = current_cancel()
    return cancel.tokens if cancel is not None and cancel.tokens else None


def format_sources(hits: Sequence[Hit], max_chars: int) -> str:
    """One line per context, ``[n] title: text``. Titles and texts are escaped
    (:func:`rag.pipeline.grounding.escape_source_text`): retrieved text is data and can neither end
    its line (the delimiter), open a chat role, nor show the model a citation marker."""
    parts = []
    for n, h in enumerate(hits, 1):
        title = escape_source_text(h.document.title)
        text = (
            h.document.text
            if len(h.document.text) <= max_chars
            else h.document.text[:max_chars] + "..."
        )
        parts.append(
            prompts.render(
                "answer_source",
                n=n,
                title=f"{title}: " if title else "",
                text=escape_source_text(text),
            )
        )
    return "\n".join(parts)


def context_hits(demo: Demonstration) -> list[Hit]:
    """A demonstration's context texts as hits, so they are numbered and escaped like sources."""
    return [
        Hit(document=Document(id=f"{demo.id}:{i}", text=t), score=0.0)
        for i, t in enumerate(demo.context)
    ]


class Pipeline(Node):
    """Compose nodes into search and question answering.

    Args:
        retriever: first-stage retriever (BM25, dense, hybrid, multi-vector...).
        rerankers: applied in order to the retrieved candidates.
        compressors: applied in order to the final contexts.
        generator: answers questions (``ask``); optional for search-only pipelines.
        k: contexts given to the generator / hits returned by ``search``.
        candidates: hits retrieved before reranking (default ``max(k, 50)`` with rerankers).
        max_source_chars: characters of each source shown to the generator.
        attribute_uncited: when the model cites nothing, attribute sentences to sources by word
            overlap; such citations are labelled ``source="attributed"``.
        demonstrations: a :class:`~rag.pipeline.demonstrations.DemonstrationSelector`; its top-k
            solved examples for the question go before it as few-shot user/assistant turns.
        context: a :class:`~rag.pipeline.context.ChunkContext`: merges and expands chunk hits, fits
            them to the generator's window and checks each citation against its span.
    """

    name: ClassVar[str] = "pipeline"
    kind: ClassVar[str] = "pipeline"

    def __init__(
        self,
        retriever: Retriever,
        rerankers: list[Reranker] | None = None,
        compressors: list[Compressor] | None = None,
        generator: Generator | None = None,
        k: int = 5,
        candidates: int | None = None,
        max_source_chars: int = 1000,
        attribute_uncited: bool = True,
        demonstrations: Any = None,
        context: Any = None,
    ) -> None:
        check_k(k)
        if candidates is not None:
            check_k(candidates)
        self.retriever = retriever
        self.rerankers = list(rerankers or [])
        self.compressors = list(compressors or [])
        self.generator = generator
        self.k = k
        self.candidates = candidates
        self.max_source_chars = max_source_chars
        self.attribute_uncited = attribute_uncited
        self.demonstrations = demonstrations
        self.context = context

    def _load(self) -> None:
        nodes: list[Retriever | Reranker | Compressor] = [
            self.retriever,
            *self.rerankers,
            *self.compressors,
        ]
        for n in nodes:
            n.load()

    def index(
        self,
        documents: Sequence[Document | dict[str, Any]],
        cursor: tuple[str, Any] | None = None,
    ) -> Pipeline:
        """Add (or replace by id) documents. On an index opened or saved in a folder the change
        is committed before this returns (:mod:`rag.index`); ``cursor=(source, value)`` records
        in the same commit how far ``source`` is in (resumable ingestion): a record count, or
        any JSON value such as a folder's file manifest (:mod:`rag.ingest.indexing`).
        Rerankers with index-time state (late interaction's token store) index them too, in the
        same commit."""
        from rag.index.validate import check_documents

        docs = check_documents(documents)  # before anything is applied

        def change() -> None:
            self.retriever.index(docs)
            for rr in self._stateful_rerankers().values():
                rr.index_documents(docs)

        self._write(change, cursor)
        return self

    def delete(self, ids: Sequence[str], cursor: tuple[str, Any] | None = None) -> int:
        """Remove documents by id (committed, as :meth:`index`, with an optional ``cursor``);
        returns how many were present."""
        out: list[int] = []

        def change() -> None:
            out.append(self.retriever.delete(list(ids)) if ids else 0)
            for rr in self._stateful_rerankers().values():
                rr.delete_documents(list(ids))

        self._write(change, cursor)
        return out[0]

    def compact(self) -> None:
        """Merge the committed segments into one and drop deleted documents."""
        from rag.index.docstore import DocumentStore

        def merge() -> None:
            docs = self.retriever.documents
            if isinstance(docs, DocumentStore):
                docs.compact()
            if hasattr(self.retriever, "compact"):
                self.retriever.compact()

        self._write(merge)

    # -- the index folder: delegated to an IndexSession (rag.index.session) ----------------------
    _session: Any = None

    @property
    def session(self) -> Any:
        """The :class:`~rag.index.session.IndexSession` of this pipeline's index folder (folder,
        lease, writer lock, commits), ``None`` for an index in memory only."""
        return self._session

    @property
    def folder(self) -> Path | None:
        """Where this pipeline's index is committed (``None``: in memory only)."""
        return self._session.path if self._session is not None else None

    @property
    def read_only(self) -> bool:
        return self._session is not None and self._session.read_only

    def cursor(self, source: str) -> Any:
        """The committed cursor of ``source`` (see :meth:`index`), ``None`` if there is none."""
        return self._session.cursor(source) if self._session is not None else None

    def _stateful_rerankers(self) -> dict[str, BaseReranker]:
        """The rerankers whose index-time state commits with the index, by manifest part."""
        return {
            f"rerank{i}": rr for i, rr in enumerate(self.rerankers) if isinstance(rr, BaseReranker)
        }

    def _index_nodes(self) -> dict[str, Any]:
        return {"r": self.retriever, **self._stateful_rerankers()}

    def _write(self, change: Any, cursor: tuple[str, Any] | None = None) -> None:
        if self._session is None:
            change()
            return
        self._session.acquire()  # read-only, or a second writer: fails before anything applies
        try:
            change()
            self._session.commit(self._index_nodes(), cursor=cursor)
        except BaseException:
            self._reopen()  # memory goes back to the committed generation, as on disk
            raise

    def _reopen(self) -> None:
        def build(body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            retriever = Node.from_config(body["config"])
            return retriever, {"r": retriever, **self._stateful_rerankers()}

        self.retriever = self._session.open(build)

    def refresh(self) -> bool:
        """Re-open the index if another process committed a newer generation; returns whether
        it did (readers beside a writer call this to see its changes)."""
        if not self.changed_on_disk():
            return False
        self._reopen()
        return True

    def changed_on_disk(self) -> bool:
        """Whether another process committed a newer generation since this pipeline read it
        (one ``stat`` when nothing changed)."""
        return self._session is not None and self._session.changed()

    def close(self) -> None:
        """Release the index folder's writer lock (taken by the first write) and reader lease."""
        if self._session is not None:
            self._session.close()

    def save(self, path: str | os.PathLike[str], config: bool = True) -> Path:
        """Save the index (documents once, retriever and reranker state) and this pipeline's
        config (unless ``config=False``) as a new generation of the folder ``path``; later
        writes commit there."""
        from rag.index.session import IndexSession

        session = (
            self._session
            if self._session is not None and self._session.path == Path(path)
            else IndexSession(path)
        )
        held = session.writing
        try:
            session.commit(self._index_nodes(), pipeline=self.to_config() if config else None)
        finally:
            if not held:
                session.release_lock()
        self._session = session
        return session.path

    @classmethod
    def of(cls, node: Node, **kwargs: Any) -> Pipeline:
        """``node`` itself if it is a pipeline, else a pipeline over it if it is a retriever
        (``kwargs`` for the new pipeline); any other node (a chunker, a reranker...) is a one-line
        ``ConfigError``, e.g. for ``rag index --config chunker.yaml``."""
        if isinstance(node, Pipeline):
            return node
        if not isinstance(node, Retriever):
            raise ConfigError(
                f"a {node.name!r} {node.kind} is not a retriever or a pipeline; pass a retriever "
                "or pipeline config"
            )
        return cls(retriever=node, **kwargs)

    @classmethod
    def open(cls, path: str | os.PathLike[str], read_only: bool = False) -> Pipeline:
        """Open a saved index (verified: a damaged file is an error naming it): the pipeline
        config if present, the retriever over the index's one document store, every reranker's
        index-time state. The generation read is pinned for this pipeline's life (a writer in
        another process never deletes its files); :meth:`refresh` moves to a newer one."""
        from rag.index import is_index
        from rag.index.persist import load_retriever
        from rag.index.session import IndexSession

        p = Path(path)
        if not is_index(p):  # the layout before rag.index
            retriever = load_retriever(p)
            config = str(p / "pipeline.json") if (p / "pipeline.json").exists() else None
            pipe = cls._configured(config, retriever, p)
            return pipe

        def build(body: dict[str, Any]) -> tuple[Pipeline, dict[str, Any]]:
            retriever = Node.from_config(body["config"])
            pipe = cls._configured(body.get("pipeline"), retriever, p)
            return pipe, pipe._index_nodes()

        session = IndexSession(p, read_only=read_only)
        pipe = session.open(build)
        pipe._session = session
        return pipe

    @classmethod
    def _configured(cls, config: Any, retriever: Any, where: Path) -> Pipeline:
        if not config:
            return cls(retriever=retriever)
        pipe = Node.from_config(config)
        if not isinstance(pipe, Pipeline):
            raise ConfigError(f"{where} does not describe a pipeline")
        pipe.retriever = retriever
        return pipe

    def _warn_instruction(self, q: Query) -> None:
        if not q.instruction:
            return
        stages = [self.retriever, *self.rerankers, *self.compressors]
        ignored = [type(n).__name__ for n in stages if not getattr(n, "uses_instruction", False)]
        if len(ignored) == len(stages):
            warnings.warn(
                f"query {q.id!r} has an instruction but no stage uses it ({', '.join(ignored)})",
                stacklevel=3,
            )
        elif ignored:  # say which stages drop it, so a partial use is never silent
            warnings.warn(
                f"query {q.id!r}: the instruction is ignored by {', '.join(ignored)}",
                stacklevel=3,
            )

    def run_stages(
        self,
        queries: Sequence[Query | str],
        k: int | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict[str, list[Ranking]]:
        """Rankings after each stage: ``retrieve``, ``rerank:i:name``, ``compress:i:name``.
        A metadata ``filter`` (a dict in the syntax of ``retrievers.stores.filters``, or the typed
        ``rag.app.api.Filter``, converted here once) is applied by the retriever, so rerankers and
        compressors only ever see documents that match it. The retriever is asked for
        ``candidates`` hits before rerankers (default 50), never fewer than ``k``
        (:func:`rag.core.nodes.candidate_depth`)."""
        self.load()
        k = check_k(k) if k is not None else self.k
        depth = candidate_depth(k, self.candidates, 50 if self.rerankers else k)
        r = self.retriever
        if isinstance(r, BaseRetriever):  # its one check of the request, then its loop
            qs, filter = r.check_request(queries, depth, filter)
        else:
            qs, filter = [check_query(q) for q in queries], check_filter(filter)
        for q in qs:
            self._warn_instruction(q)
        with tracing.span(
            "search",
            {
                "rag.k": k,
                "rag.candidates_requested": depth,
                "rag.queries": len(qs),
                "openinference.span.kind": "CHAIN",
            },
        ) as sp:
            if len(qs) == 1:
                tracing.query_text(sp, qs[0].text)
            out = self._stages(qs, k, depth, filter)
        for rankings in out.values():  # documents read now, under the caller's read lock
            fetch_documents(rankings)
        return out

    def _stages(
        self, qs: list[Query], k: int, depth: int, filter: dict[str, Any] | None
    ) -> dict[str, list[Ranking]]:
        r = self.retriever
        out: dict[str, list[Ranking]] = {}
        with tracing.stage("retrieve", r, depth, len(qs)) as sp:
            if isinstance(r, BaseRetriever):
                rankings = r._retrieve(qs, depth, filter)
            elif filter is None:  # a duck-typed retriever (evals systems) may take no filter
                rankings = r.retrieve_batch(qs, k=depth)
            else:
                rankings = r.retrieve_batch(qs, k=depth, filter=filter)
            tracing.candidates(sp, rankings)
        out["retrieve"] = rankings
        for i, rr in enumerate(self.rerankers):
            last = i == len(self.rerankers) - 1
            with tracing.stage("rerank", rr, k if last else None, len(qs)) as sp:
                rankings = rr.rerank_batch(rankings, k=k if last else None)
                tracing.candidates(sp, rankings)
            out[f"rerank:{i}:{rr.name}"] = rankings
        if not self.rerankers:
            rankings = [r.top(k) for r in rankings]
        for i, c in enumerate(self.compressors):
            with tracing.stage("compress", c, k, len(qs)) as sp:
                rankings = [c.compress(r) for r in rankings]
                tracing.candidates(sp, rankings)
            out[f"compress:{i}:{c.name}"] = rankings
        return out

    def search_batch(
        self,
        queries: Sequence[Query | str],
        k: int | None = None,
        filter: dict[str, Any] | None = None,
    ) -> list[Ranking]:
        """The last stage's rankings (``filter``: a dict or a typed ``rag.app.api.Filter``)."""
        return list(self.run_stages(queries, k, filter).values())[-1]

    def search(
        self, query: Query | str, k: int | None = None, filter: dict[str, Any] | None = None
    ) -> Ranking:
        """One query through retriever, rerankers and compressors (see :meth:`run_stages`)."""
        return self.search_batch([query], k, filter)[0]

    def _user_turn(self, question: str, hits: Sequence[Hit]) -> str:
        return prompts.render(
            "answer_user", question=question, sources=format_sources(hits, self.max_source_chars)
        )

    def _messages(self, q: Query, hits: Sequence[Hit]) -> list[dict[str, str]]:
        question = q.text if not q.instruction else f"{q.text}\n({q.instruction})"
        shots: list[dict[str, str]] = []
        if self.demonstrations is not None:
            demos = self.demonstrations.select(q)
            shots = demo_turns(demos, lambda d: self._user_turn(d.input, context_hits(d)))
        return [
            {"role": "system", "content": prompts.load("answer_system")},
            *shots,
            {"role": "user", "content": self._user_turn(question, hits)},
        ]

    def ask_stream(
        self, query: Query | str, filter: dict[str, Any] | None = None
    ) -> Iterator[str | Answer]:
        """Yield answer text pieces as generated, then the final :class:`Answer` (sources
        searched with the metadata ``filter``, :mod:`rag.core.filters`)."""
        if self.generator is None:
            raise ConfigError("this pipeline has no generator; set generator= to answer questions")
        q = check_query(query)
        hits, messages, timings = self._prepare(q, filter=filter)
        yield from self.stream_answer(q, hits, messages, timings=timings)

    def sources(self, q: Query, hits: Sequence[Hit]) -> list[Hit]:
        """The hits the generator is shown: the ``context`` node's (neighbours merged, fitted
        to the window) when set, else the hits. Every door that answers (``ask``, chat,
        ``/v1/chat/completions``) goes through here, so all cite the same sources."""
        return list(hits) if self.context is None else self.context.build(self, q, hits)

    def _prepare(
        self, q: Query, lock: Any = None, filter: dict[str, Any] | None = None
    ) -> tuple[Sequence[Hit], list[dict[str, str]], dict[str, float]]:
        """The contexts of an answer (searched with the metadata ``filter``) and its prompt;
        ``lock`` (a context manager, e.g. a server's index read lock) is held around retrieval
        only."""
        t0 = time.perf_counter()
        with lock if lock is not None else contextlib.nullcontext():
            hits: Sequence[Hit] = self.sources(q, self.search(q, filter=filter).hits)
        timings = {"retrieve_s": time.perf_counter() - t0}
        return hits, self._messages(q, hits), timings

    def stream_answer(
        self,
        q: Query,
        hits: Sequence[Hit],
        messages: list[dict[str, str]],
        generator: Any = None,
        timings: dict[str, float] | None = None,
        trace: Sequence[TraceStep] | None = None,
        max_new_tokens: int | None = None,
    ) -> Iterator[str | Answer]:
        """Generate over ``messages`` (text pieces, then the :class:`Answer`); markers resolve
        against ``hits`` only, so an answer can cite nothing that was not given. With ``trace``,
        the answer step is appended to it on the Answer."""
        gen, stops, kw = self._generation(generator, max_new_tokens)
        t0 = time.perf_counter()
        pieces: list[str] = []
        sp = tracing.generation(gen, max_new_tokens)
        try:
            for piece in gen.stream(messages, stop=stops, **kw):
                pieces.append(piece)
                yield piece
        except BaseException as e:
            tracing.finish(sp, e)
            raise
        text = "".join(pieces).strip()
        tracing.usage(sp, gen, messages, text, _steps())
        tracing.finish(sp)
        yield self._answer(q, hits, text, gen, t0, timings, trace)

    def _generation(
        self, generator: Any, max_new_tokens: int | None
    ) -> tuple[Any, list[str], dict[str, Any]]:
        gen = generator if generator is not None else self.generator
        if gen is None:
            raise ConfigError("this pipeline has no generator; set pipeline.generator to ask")
        # the answer prompt asks for one sentence: an answer ends where the model starts a new
        # paragraph or echoes the next numbered source
        stops = [*getattr(gen, "stop", []), *ANSWER_STOPS]
        kw = {"max_new_tokens": max_new_tokens} if max_new_tokens is not None else {}
        return gen, stops, kw

    def _answer(
        self,
        q: Query,
        hits: Sequence[Hit],
        text: str,
        gen: Any,
        t0: float,
        timings: dict[str, float] | None,
        trace: Sequence[TraceStep] | None,
    ) -> Answer:
        """The :class:`Answer` of a generated ``text``: markers resolved against ``hits``."""
        cites, bad = resolve(text, hits)
        if not cites and self.attribute_uncited:
            cites = attribute(text, hits)
        steps = (
            ()
            if trace is None
            else (
                *trace,
                TraceStep(action="answer", document_ids=tuple(c.document_id for c in cites)),
            )
        )
        answer = Answer(
            query=q,
            text=text,
            citations=tuple(cites),  # located by rag.pipeline.citations.cite (path, span, page,
            # heading)
            invalid_markers=tuple(bad),
            contexts=tuple(hits),
            timings={**(timings or {}), "generate_s": time.perf_counter() - t0},
            model=f"{getattr(gen, 'model', '')}|prompt={prompts.version('answer_user')}",
            trace=steps,
        )
        # the context node judges each citation against its span, for every door alike
        return answer if self.context is None else self.context.check(answer)

    def ask(self, query: Query | str, filter: dict[str, Any] | None = None) -> Answer:
        *_, answer = self.ask_stream(query, filter)
        if not isinstance(answer, Answer):  # the generator yielded nothing at all
            raise ConfigError("generator produced no output")
        return answer

    # -- async (rag.core.concurrency): agent frameworks, FastAPI apps and `rag serve`
    # ------------------
    async def asearch(
        self,
        query: Query | str,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
        pool: Any = None,
    ) -> Ranking:
        """:meth:`search` without blocking the event loop: the CPU-bound stages (encoding,
        scoring, reranking) run in the bounded worker pool (``pool``, default
        :func:`rag.core.concurrency.default_pool`), with this context (the current span) carried in.
        Hook for native async retrieval (not wired yet): a retriever whose I/O could be
        awaited (Qdrant's ``AsyncQdrantClient`` for a ``url=`` store, a remote embedder's
        ``aencode``) would be awaited here before the rerankers run in the pool; today every
        retriever runs whole in the pool."""
        from rag.core.concurrency import default_pool

        pool = pool if pool is not None else default_pool()
        return await pool.run(self.search, query, k, filter)

    async def astream(
        self,
        query: Query | str,
        lock: Any = None,
        max_new_tokens: int | None = None,
        pool: Any = None,
        filter: dict[str, Any] | None = None,
    ) -> AsyncIterator[str | Answer]:
        """:meth:`ask_stream` on the event loop: text pieces as generated, then the
        :class:`Answer`. Retrieval runs in the worker pool (holding ``lock``, e.g. a server's
        index read lock, for retrieval only); generation is awaited natively when the generator
        has ``astream`` (:class:`~rag.generators.OpenAICompatibleGenerator`: ``httpx``'s async
        client), else read from its own thread (:func:`rag.core.concurrency.aiterate`). Closing or
        cancelling this iterator (a client that went away) stops the generation at its next
        token."""
        from rag.core.concurrency import default_pool

        if self.generator is None:
            raise ConfigError("this pipeline has no generator; set generator= to answer questions")
        q = check_query(query)
        pool = pool if pool is not None else default_pool()
        root = tracing.start("ask", {"openinference.span.kind": "CHAIN", "rag.k": self.k})
        try:
            with tracing.activate(root):
                hits, messages, timings = await pool.run(self._prepare, q, lock, filter)
            async for item in self.astream_answer(
                q, hits, messages, timings=timings, max_new_tokens=max_new_tokens, parent=root
            ):
                yield item  # an Answer is checked by the context node in _answer
        except BaseException as e:
            tracing.finish(root, e)
            raise
        tracing.finish(root)

    async def astream_answer(
        self,
        q: Query,
        hits: Sequence[Hit],
        messages: list[dict[str, str]],
        generator: Any = None,
        timings: dict[str, float] | None = None,
        trace: Sequence[TraceStep] | None = None,
        max_new_tokens: int | None = None,
        parent: Any = None,
    ) -> AsyncIterator[str | Answer]:
        """:meth:`stream_answer` on the event loop (see :meth:`astream`)."""
        from rag.core.concurrency import Cancel, aiterate, cancel_scope, current_cancel

        gen, stops, kw = self._generation(generator, max_new_tokens)
        cancel = current_cancel() or Cancel()
        t0 = time.perf_counter()
        pieces: list[str] = []
        sp = tracing.generation(gen, max_new_tokens, parent)
        try:
            with cancel_scope(cancel):  # no yield inside: set, then reset at once
                if callable(getattr(gen, "astream", None)):
                    source = gen.astream(messages, stop=stops, **kw)
                else:
                    source = aiterate(lambda: iter(gen.stream(messages, stop=stops, **kw)), cancel)
            try:
                async for piece in source:
                    pieces.append(piece)
                    yield piece
            finally:
                await source.aclose()
        except BaseException as e:
            cancel.set(type(e).__name__)
            tracing.finish(sp, e)
            raise
        text = "".join(pieces).strip()
        tracing.usage(sp, gen, messages, text, cancel.tokens or None)
        tracing.finish(sp)
        yield self._answer(q, hits, text, gen, t0, timings, trace)

    async def aask(
        self,
        query: Query | str,
        lock: Any = None,
        max_new_tokens: int | None = None,
        pool: Any = None,
        filter: dict[str, Any] | None = None,
    ) -> Answer:
        """:meth:`ask` on the event loop: the last item of :meth:`astream`."""
        answer = None
        async for item in self.astream(query, lock, max_new_tokens, pool, filter):
            answer = item
        if not isinstance(answer, Answer):  # the generator yielded nothing at all
            raise GenerationError(NO_OUTPUT)
        return answer


# Registration from above: a node type registers when its package is imported, and rag.core
# imports no node package. The pipeline composes retrievers, rerankers, compressors and a
# generator (and an encoder inside a dense retriever), so importing it registers all of them,
# and its own query-time nodes, for ``Node.from_config`` and ``Pipeline.open``.
import rag.compressors as _compressors  # noqa: E402, F401
import rag.core.remote_encoder as _remote_encoder  # noqa: E402, F401
import rag.generators as _generators  # noqa: E402, F401
import rerankers as _rerankers  # noqa: E402, F401
import retrievers as _retrievers  # noqa: E402, F401
from rag.pipeline.context import ChunkContext  # noqa: E402, F401
