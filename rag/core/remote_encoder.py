"""A sentence encoder behind any OpenAI-compatible ``POST /v1/embeddings`` endpoint.

:class:`RemoteEncoder` sends texts to ragnodes' own ``rag serve`` (``/v1/embeddings`` of a dense
or hybrid index), vLLM (``--task embed``), Hugging Face TEI, Infinity or OpenAI itself, and is a
drop-in for :class:`rag.core.encoders.TransformerEncoder` wherever an encoder is configured
(``DenseRetriever(encoder=RemoteEncoder(...))``, ``type: remote_encoder`` in a config file):

* ``encode(texts, kind)`` / ``encode_queries`` / ``encode_documents`` return float32 ``(N, H)``
  vectors in input order (L2-normalised when ``normalize``); ``kind`` picks the prefix, applied
  here, client side, so every server sees plain text;
* texts go in batches of ``batch_size``, at most ``max_concurrency`` requests in flight (threads
  for the sync call, an ``asyncio.Semaphore`` for :meth:`RemoteEncoder.aencode`, the variant
  that async servers and ingestion actors await);
* a transport error, a timeout, 429 or 5xx is retried ``max_retries`` times with exponential
  backoff (``backoff * 2**attempt`` seconds, with jitter; ``Retry-After`` honoured); any other
  status is one :class:`~rag.core.errors.RagError` line with the server's message;
* document vectors go through the embedding cache first (:mod:`rag.core.embed_cache`, ``cache`` or
  ``$RAGNODES_EMBED_CACHE``), keyed by ``base_url``, ``model`` and the prefixes: a corpus is sent
  once;
* the API key is read from the environment variable named by ``api_key_env`` (never stored in a
  config); no variable set means no ``Authorization`` header.

>>> enc = RemoteEncoder("http://127.0.0.1:8000/v1", model="minilm")
>>> enc.encode(["a sentence"]).shape                     # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError, RagError
from rag.core.nodes import Node

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RemoteEncoder(Node):
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` server.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (``/embeddings`` is appended).
        model: the ``model`` field sent (the server's model name).
        api_key_env: name of the environment variable holding the API key (``None``: none).
        batch_size: texts per request.
        max_concurrency: requests in flight at once.
        max_retries: retries of a failed request (transport errors, timeouts, 408/429/5xx).
        backoff: seconds before the first retry; doubled each time.
        timeout: seconds per request.
        normalize: L2-normalise the returned vectors.
        query_prefix / document_prefix: prepended to queries / documents before sending.
        cache: folder of the on-disk embedding cache for documents (``None``: the default).
    """

    name: ClassVar[str] = "remote_encoder"
    kind: ClassVar[str] = "encoder"
    requires: ClassVar[tuple[str, ...]] = ("httpx",)

    def __init__(
        self,
        base_url: str,
        model: str = "minilm",
        api_key_env: str | None = "RAGNODES_EMBEDDINGS_API_KEY",
        batch_size: int = 64,
        max_concurrency: int = 4,
        max_retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 60.0,
        normalize: bool = True,
        query_prefix: str = "",
        document_prefix: str = "",
        cache: str | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        if batch_size < 1 or max_concurrency < 1 or max_retries < 0:
            raise ConfigError(
                "need batch_size >= 1, max_concurrency >= 1 and max_retries >= 0, got "
                f"{batch_size}, {max_concurrency}, {max_retries}"
            )
        if backoff < 0 or timeout <= 0:
            raise ConfigError(f"need backoff >= 0 and timeout > 0, got {backoff}, {timeout}")
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.normalize = normalize
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.cache = cache
        self.truncated = 0  # the server truncates; kept for the encoder interface
        self._dim: int | None = None

    # -- the request ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/embeddings"

    def headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts, "encoding_format": "float"}

    def _parse(self, texts: list[str], status: int, payload: Any, text: str) -> np.ndarray:
        if status >= 400:
            msg = text[:300]
            if isinstance(payload, dict):
                err = payload.get("error", payload.get("detail", msg))
                msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            raise RagError(f"{self.url} answered {status}: {msg}")
        try:
            rows = sorted(payload["data"], key=lambda d: d["index"])
            vecs = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as e:
            raise RagError(f"{self.url} sent no OpenAI embeddings list ({e})") from None
        if vecs.ndim != 2 or len(vecs) != len(texts):
            raise RagError(f"{self.url} sent {len(vecs)} vectors for {len(texts)} texts")
        if self.normalize:
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs

    def _unreachable(self, attempt: int, e: Exception) -> RagError:
        return RagError(f"{self.url} unreachable after {attempt + 1} tries: {e}")

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        return float(self.backoff * 2**attempt * (0.5 + random.random()))

    def _post(self, client: Any, texts: list[str]) -> np.ndarray:
        import httpx

        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                r = client.post(self.url, json=self._body(texts), headers=self.headers())
            except httpx.TransportError as e:  # connect/read errors and timeouts
                if last:
                    raise self._unreachable(attempt, e) from None
                time.sleep(self._wait(attempt, None))
                continue
            if r.status_code in RETRY_STATUS and not last:
                time.sleep(self._wait(attempt, r.headers.get("retry-after")))
                continue
            return self._parse(texts, r.status_code, _json(r), r.text)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _apost(self, client: Any, texts: list[str], gate: asyncio.Semaphore) -> np.ndarray:
        import httpx

        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                async with gate:
                    r = await client.post(self.url, json=self._body(texts), headers=self.headers())
            except httpx.TransportError as e:
                if last:
                    raise self._unreachable(attempt, e) from None
                await asyncio.sleep(self._wait(attempt, None))
                continue
            if r.status_code in RETRY_STATUS and not last:
                await asyncio.sleep(self._wait(attempt, r.headers.get("retry-after")))
                continue
            return self._parse(texts, r.status_code, _json(r), r.text)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the encoder interface --------------------------------------------------------------------
    def _batches(self, texts: Sequence[str]) -> list[list[str]]:
        return [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]

    def _send(self, texts: list[str]) -> np.ndarray:
        import httpx

        batches = self._batches(texts)
        with httpx.Client(timeout=self.timeout) as client:
            if len(batches) == 1 or self.max_concurrency == 1:
                parts = [self._post(client, b) for b in batches]
            else:
                with ThreadPoolExecutor(min(self.max_concurrency, len(batches))) as pool:
                    parts = list(pool.map(lambda b: self._post(client, b), batches))
        return self._stack(parts)

    async def _asend(self, texts: list[str]) -> np.ndarray:
        import httpx

        gate = asyncio.Semaphore(self.max_concurrency)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            calls = [self._apost(client, b, gate) for b in self._batches(texts)]
            parts = await asyncio.gather(*calls)
        return self._stack(list(parts))

    def _stack(self, parts: list[np.ndarray]) -> np.ndarray:
        out = np.concatenate(parts).astype(np.float32, copy=False)
        self._dim = int(out.shape[1])
        return out

    def _prefixed(self, texts: Sequence[str], kind: str) -> list[str]:
        if kind not in ("query", "document"):
            raise ConfigError(f"kind must be 'query' or 'document', got {kind!r}")
        prefix = self.query_prefix if kind == "query" else self.document_prefix
        return [prefix + t for t in texts]

    def encode(
        self, texts: Sequence[str], kind: str = "document", progress: bool = False
    ) -> np.ndarray:
        """Vectors ``(N, H)`` float32 for ``texts``; documents go through the embedding cache."""
        texts = self._prefixed(texts, kind)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        from rag.core.embed_cache import cache_for

        cache = cache_for(self) if kind == "document" else None
        if cache is None:
            return self._send(texts)
        return cache.encode(texts, self._send)

    async def aencode(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """:meth:`encode` for an event loop: the requests are awaited, not run in threads (the
        cache lookups are local and synchronous)."""
        texts = self._prefixed(texts, kind)
        if not texts:
            return np.zeros((0, await self.adim()), dtype=np.float32)
        from rag.core.embed_cache import cache_for, text_hashes

        cache = cache_for(self) if kind == "document" else None
        if cache is None:
            return await self._asend(texts)
        # the cached rows first, then one awaited call for the rest, stored for next time
        known = {h: cache._lookup(h) for h in set(text_hashes(texts))}
        hashes = text_hashes(texts)
        missing = list(dict.fromkeys(t for t, h in zip(texts, hashes) if known[h] is None))
        if missing:
            cache.put(missing, await self._asend(missing))
        return cache.encode(texts, self._send)  # every row is cached now: no request

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, kind="query")

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self.encode(texts, kind="document", progress=progress)

    @property
    def dim(self) -> int:
        """The vector size (one request for a probe text the first time)."""
        if self._dim is None:
            self._send(["dimension probe"])  # sets _dim
        return int(self._dim or 0)

    async def adim(self) -> int:
        if self._dim is None:
            await self._asend(["dimension probe"])
        return int(self._dim or 0)

    def fingerprint(self) -> str:
        """What identifies the model for the embedding cache: the server and model name (there
        are no local weights to hash)."""
        return f"{self.base_url.rstrip('/')}#{self.model}"

    def cache_key(self) -> dict[str, Any]:
        """What the vectors depend on: the server, the model, the prefixes, normalisation."""
        keep = ("base_url", "model", "normalize", "query_prefix", "document_prefix")
        return {k: v for k, v in self.to_config().items() if k in (*keep, "type")}

    def count_overlong(self, texts: Sequence[str], kind: str = "document") -> int:
        """Unknown here (the server truncates with its own tokenizer): 0."""
        return 0


def _json(r: Any) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


__all__ = ["RemoteEncoder"]
