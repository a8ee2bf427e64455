"""Transformer text encoders: sentence vectors (dense) and token vectors (late interaction).

Pooling follows the model cards: ``mean`` (sentence-transformers, e.g. all-MiniLM-L6-v2),
``cls`` (BGE, ColBERT-style [CLS]) or ``last`` (decoder embedders such as Qwen3/E5-Mistral).

The model runs on :class:`rag.core.runtime.EncoderRuntime` (shared with the token encoder and the
cross-encoder): texts are tokenised once, sorted by length and cut into token-budget batches.
``precision="fp32"`` (the default) gives the same vectors and figures on every CPU;
``precision="bf16"`` is the explicit fast mode (bfloat16 autocast; pooling and normalisation in
float32), with its measured quality change per collection in docs/encoders.md; ``auto`` is an
alias of ``fp32``. ``backend="onnx"`` runs the forward pass in ONNX Runtime
(:mod:`rag.core.onnx_runtime`: ``precision="fp32"`` graph-optimised, or ``"int8"`` dynamic
quantisation), exported from the same weights on first use; explicit, never chosen for you.
``bench/bench_encoders.py`` measures speed and quality side by side with
sentence-transformers. With ``cache`` (or ``$RAGNODES_EMBED_CACHE``) set, document vectors are
kept on disk (:mod:`rag.core.embed_cache`) and a corpus is embedded once per encoder config.

>>> enc = TransformerEncoder("minilm")
>>> enc.encode(["a sentence", "another"]).shape          # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError
from rag.core.nodes import Node
from rag.core.runtime import PRECISIONS, EncoderRuntime, cpu_has_bf16, pool, resolve_precision

__all__ = ["POOLINGS", "PRECISIONS", "TransformerEncoder", "cpu_has_bf16"]

POOLINGS = ("mean", "cls", "last")
BACKENDS = ("torch", "onnx")


class TransformerEncoder(Node):
    """Encode texts with any Hugging Face encoder.

    Args:
        model: short name (``minilm``), HF id or local path.
        pooling: ``mean`` | ``cls`` | ``last`` over non-padding tokens.
        normalize: L2-normalise the sentence vectors (cosine = dot product).
        max_length: tokens per text after truncation (``truncated`` counts the texts cut).
        batch_size: most texts per forward pass (after sorting by length).
        query_prefix / document_prefix: prepended to queries / documents (asymmetric models).
        precision: ``fp32`` (default: the same figures on every CPU) | ``bf16`` (fast mode,
            measured in docs/encoders.md) | ``auto`` (an alias of ``fp32``; saved as ``fp32``).
        device: ``auto`` (CUDA if present) | ``cpu`` | ``cuda``.
        layer: pool the output of transformer layer ``layer`` (1-based) instead of the last one:
            the layer axis of 2D Matryoshka embeddings (Li et al., "2D Matryoshka Sentence
            Embeddings", 2024); combine with a store's ``dims`` for the other axis. Models not
            trained for it lose quality at early layers (measured in bench/bench_scale.py).
        max_batch_tokens: most padded tokens per forward pass (token-budget batching).
        cache: folder of the on-disk embedding cache for documents (:mod:`rag.core.embed_cache`);
            ``None`` uses ``$RAGNODES_EMBED_CACHE`` or the process default (``rag eval`` sets
            one), else no cache.
        backend: ``torch`` (default: exact fp32, or bf16) | ``onnx`` (ONNX Runtime on CPU,
            precision ``fp32`` or ``int8``; needs ``pip install "ragnodes[onnx]"``).
    """

    name: ClassVar[str] = "transformer_encoder"
    kind: ClassVar[str] = "encoder"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")

    def __init__(
        self,
        model: str = "minilm",
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 256,
        batch_size: int = 32,
        query_prefix: str = "",
        document_prefix: str = "",
        precision: str = "fp32",
        device: str = "auto",
        layer: int | None = None,
        max_batch_tokens: int = 8192,
        cache: str | None = None,
        backend: str = "torch",
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "onnx":
            from rag.core.onnx_runtime import ONNX_PRECISIONS

            precision = "fp32" if precision == "auto" else precision
            if precision not in ONNX_PRECISIONS:
                raise ConfigError(
                    f"backend='onnx' runs precision {ONNX_PRECISIONS}, got {precision!r}"
                )
            if layer is not None or device not in ("auto", "cpu"):
                raise ConfigError(
                    "backend='onnx' runs the last layer on CPU: pass layer=None and device='cpu'"
                )
        if layer is not None and (type(layer) is not int or layer < 1):
            raise ConfigError(f"layer must be an int >= 1 or None, got {layer!r}")
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if max_length < 1 or batch_size < 1 or max_batch_tokens < 1:
            raise ConfigError(
                "max_length, batch_size and max_batch_tokens must be >= 1, got "
                f"{max_length}, {batch_size}, {max_batch_tokens}"
            )
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.backend = backend
        self.precision = precision if backend == "onnx" else resolve_precision(precision)
        self.device = device
        self.layer = layer
        self.max_batch_tokens = max_batch_tokens
        self.cache = cache
        # texts longer than max_length (cut by the tokenizer) since this encoder was made
        self.truncated = 0

    def _load(self) -> None:
        self.runtime: EncoderRuntime
        if self.backend == "onnx":
            from rag.core.onnx_runtime import OnnxEncoderRuntime

            self.runtime = OnnxEncoderRuntime(
                self.model, self.precision, self.batch_size, self.max_batch_tokens
            ).load()
        else:
            self.runtime = EncoderRuntime(
                self.model,
                head="pooled",
                precision=self.precision,
                device=self.device,
                batch_size=self.batch_size,
                max_batch_tokens=self.max_batch_tokens,
            ).load()
        self.tokenizer, self.net, self._device = (
            self.runtime.tokenizer,
            self.runtime.net,
            self.runtime.dev,
        )
        self._torch = self.runtime.torch
        n_layers = getattr(self.net.config, "num_hidden_layers", None)
        if self.layer is not None and n_layers is not None and self.layer > n_layers:
            raise ConfigError(f"layer must be <= {n_layers} for {self.model!r}, got {self.layer}")

    @property
    def dim(self) -> int:
        self.load()
        return int(self.net.config.hidden_size)

    def _autocast(self, n_tokens: int | None = None) -> contextlib.AbstractContextManager[Any]:
        self.load()
        return self.runtime.autocast(n_tokens)

    def tokenize(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> dict[str, list[list[int]]]:
        """Tokenizer output lists cut at ``max_length``; counts the texts cut in ``truncated``."""
        self.load()
        kw: dict[str, Any] = {
            "truncation": True,
            "max_length": self.max_length,
            "add_special_tokens": add_special_tokens,
        }
        if not getattr(self.tokenizer, "is_fast", False):
            return dict(self.tokenizer(list(texts), **kw))
        enc = self.tokenizer(list(texts), return_overflowing_tokens=True, **kw)
        rows = enc.pop("overflow_to_sample_mapping")
        first = [r for r in range(len(rows)) if r == 0 or rows[r] != rows[r - 1]]
        self.truncated += len(rows) - len(first)
        return {k: [v[r] for r in first] for k, v in enc.items() if isinstance(v, list)}

    def batches(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> Iterator[tuple[list[int], Any, Any, Any]]:
        """Yield ``(positions, hidden (B, L, H) fp32, attention_mask (B, L), input_ids (B, L))``
        over length-sorted token-budget batches; ``positions`` index into ``texts``."""
        features = self.tokenize(texts, add_special_tokens)
        layer = self.layer

        def forward(net: Any, batch: dict[str, Any]) -> Any:
            if layer is None:
                return net(**batch).last_hidden_state
            return net(**batch, output_hidden_states=True).hidden_states[layer]

        for pos, batch, hidden in self.runtime.run(features, forward):
            yield pos, hidden.float(), batch["attention_mask"], batch["input_ids"]

    def _pool(self, hidden: Any, mask: Any) -> Any:
        return pool(hidden, mask, self.pooling)

    def cache_key(self) -> dict[str, Any]:
        """What the vectors depend on (besides the model files and the text)."""
        cfg = self.to_config()
        for k in ("batch_size", "max_batch_tokens", "device", "cache"):
            cfg.pop(k, None)
        return cfg

    def encode(
        self, texts: Sequence[str], kind: str = "document", progress: bool = False
    ) -> np.ndarray:
        """Encode texts to float32 vectors ``(N, H)``; ``kind`` picks the prefix. Documents go
        through the embedding cache when one is configured."""
        if kind not in ("query", "document"):
            raise ConfigError(f"kind must be 'query' or 'document', got {kind!r}")
        prefix = self.query_prefix if kind == "query" else self.document_prefix
        texts = [prefix + t for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        from rag.core.embed_cache import STATS, cache_for

        cache = cache_for(self) if kind == "document" else None
        if cache is None:
            STATS["misses"] += len(texts) if kind == "document" else 0
            return self._encode(texts, progress)
        return cache.encode(texts, lambda miss: self._encode(miss, progress))

    def _encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        torch = self._torch
        bar = None
        if progress:  # a bar only when asked: even a disabled tqdm takes its global locks,
            from tqdm.auto import tqdm  # which concurrent single-query encodes contend on

            bar = tqdm(total=len(texts), desc="embedding", unit="text")
        for pos, hidden, mask, _ in self.batches(texts):
            v = self._pool(hidden, mask)
            if self.normalize:
                v = torch.nn.functional.normalize(v, p=2, dim=-1)
            out[pos] = v.cpu().numpy()
            if bar is not None:
                bar.update(len(pos))
        if bar is not None:
            bar.close()
        return out

    def count_overlong(self, texts: Sequence[str], kind: str = "document") -> int:
        """How many ``texts`` (with the prefix for ``kind``) are longer than ``max_length`` tokens,
        special tokens included, i.e. would be truncated by :meth:`encode` (nothing is silent:
        ``rag index`` reports this count)."""
        self.load()
        prefix = self.query_prefix if kind == "query" else self.document_prefix
        limit, self.tokenizer.model_max_length = self.tokenizer.model_max_length, 10**9
        try:
            ids = self.tokenizer([prefix + t for t in texts], truncation=False)["input_ids"]
        finally:
            self.tokenizer.model_max_length = limit
        return sum(len(x) > self.max_length for x in ids)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, kind="query")

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self.encode(texts, kind="document", progress=progress)
