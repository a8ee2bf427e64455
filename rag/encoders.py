"""Transformer text encoders: sentence vectors (dense) and token vectors (late interaction).

Pooling follows the model cards: ``mean`` (sentence-transformers, e.g. all-MiniLM-L6-v2),
``cls`` (BGE, ColBERT-style [CLS]) or ``last`` (decoder embedders such as Qwen3/E5-Mistral).

Speed: texts are tokenised once, sorted by length and batched so that padding is minimal.
``precision="auto"`` runs the transformer under ``torch.autocast`` in bfloat16 on CPUs with
AVX-512-BF16/AMX and on CUDA, and in float32 elsewhere; pooling and normalisation stay in float32.
``bench/bench_encoder.py`` measures speed and the cosine to float32 vectors; ``tests`` check that
retrieval quality is unchanged.

>>> enc = TransformerEncoder("minilm")
>>> enc.encode(["a sentence", "another"]).shape          # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError
from rag.extras import require
from rag.models import load_hf
from rag.nodes import Node

POOLINGS = ("mean", "cls", "last")
PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX-512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TransformerEncoder(Node):
    """Encode texts with any Hugging Face encoder.

    Args:
        model: short name (``minilm``), HF id or local path.
        pooling: ``mean`` | ``cls`` | ``last`` over non-padding tokens.
        normalize: L2-normalise the sentence vectors (cosine = dot product).
        max_length: tokens per text after truncation.
        batch_size: texts per forward pass (after sorting by length).
        query_prefix / document_prefix: prepended to queries / documents (asymmetric models).
        precision: ``auto`` | ``fp32`` | ``bf16``.
        device: ``auto`` (CUDA if present) | ``cpu`` | ``cuda``.
        layer: pool the output of transformer layer ``layer`` (1-based) instead of the last one:
            the layer axis of 2D Matryoshka embeddings (Li et al., "2D Matryoshka Sentence
            Embeddings", 2024); combine with a store's ``dims`` for the other axis. Models not
            trained for it lose quality at early layers (measured in bench/bench_scale.py).
    """

    name: ClassVar[str] = "transformer_encoder"
    kind: ClassVar[str] = "encoder"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    # Sequence lengths are padded to a multiple of this: oneDNN's bf16/AMX kernels are built per
    # input shape, and length-sorted batches would otherwise build one for almost every batch.
    pad_multiple: ClassVar[int] = 32

    def __init__(
        self,
        model: str = "minilm",
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 256,
        batch_size: int = 32,
        query_prefix: str = "",
        document_prefix: str = "",
        precision: str = "auto",
        device: str = "auto",
        layer: int | None = None,
    ) -> None:
        if layer is not None and (type(layer) is not int or layer < 1):
            raise ConfigError(f"layer must be an int >= 1 or None, got {layer!r}")
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if max_length < 1 or batch_size < 1:
            raise ConfigError(
                f"max_length and batch_size must be >= 1, got {max_length}, {batch_size}"
            )
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.precision = precision
        self.device = device
        self.layer = layer

    def _load(self) -> None:
        self.tokenizer, self.net, self._device = load_hf(
            self.model, "AutoModel", self.device, feature="transformer encoders"
        )
        self._torch = require("torch")
        n_layers = getattr(self.net.config, "num_hidden_layers", None)
        if self.layer is not None and n_layers is not None and self.layer > n_layers:
            raise ConfigError(f"layer must be <= {n_layers} for {self.model!r}, got {self.layer}")

    @property
    def dim(self) -> int:
        self.load()
        return int(self.net.config.hidden_size)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        torch = self._torch
        dev = self._device.type
        use_bf16 = self.precision == "bf16" or (
            self.precision == "auto" and (dev == "cuda" or cpu_has_bf16())
        )
        if use_bf16:
            return torch.autocast(dev, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def batches(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> Iterator[tuple[list[int], Any, Any, Any]]:
        """Yield ``(positions, hidden (B, L, H) fp32, attention_mask (B, L), input_ids (B, L))``
        over length-sorted batches; ``positions`` index into ``texts``."""
        self.load()
        torch = self._torch
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=add_special_tokens,
        )
        ids = enc["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
        for start in range(0, len(order), self.batch_size):
            pos = order[start : start + self.batch_size]
            feats = [{k: enc[k][i] for k in enc.keys()} for i in pos]
            batch = self.tokenizer.pad(
                feats, return_tensors="pt", pad_to_multiple_of=self.pad_multiple
            ).to(self._device)
            with torch.inference_mode(), self._autocast():
                if self.layer is None:
                    hidden = self.net(**batch).last_hidden_state
                else:
                    hidden = self.net(**batch, output_hidden_states=True).hidden_states[self.layer]
            yield pos, hidden.float(), batch["attention_mask"], batch["input_ids"]

    def _pool(self, hidden: Any, mask: Any) -> Any:
        torch = self._torch
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        if self.pooling == "cls":
            return hidden[:, 0]
        # last non-padding token (works for left and right padding)
        if bool(mask[:, -1].all()):
            return hidden[:, -1]
        last = mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def encode(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """Encode texts to float32 vectors ``(N, H)``; ``kind`` picks the prefix."""
        if kind not in ("query", "document"):
            raise ConfigError(f"kind must be 'query' or 'document', got {kind!r}")
        prefix = self.query_prefix if kind == "query" else self.document_prefix
        texts = [prefix + t for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        torch = self._torch
        for pos, hidden, mask, _ in self.batches(texts):
            v = self._pool(hidden, mask)
            if self.normalize:
                v = torch.nn.functional.normalize(v, p=2, dim=-1)
            out[pos] = v.cpu().numpy()
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

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, kind="document")
