"""Cross-encoder reranking with any Hugging Face sequence-classification checkpoint.

Each (query, document) pair is read jointly by the model (Nogueira & Cho 2019, "Passage
Re-ranking with BERT"); the score is the classification logit, or ``sigmoid(logit)``.
Scores match sentence-transformers ``CrossEncoder.predict`` (same pair encoding, same default
activation: sigmoid for one label, identity otherwise);
``tests/nodes/test_rerankers_cross_encoder.py`` checks it to 1e-5.

Pairs run on :class:`rag.core.runtime.EncoderRuntime` (head ``classification``, shared with the
encoders): tokenised once, sorted by length, cut into token-budget batches; ``fp32`` by default
(the same scores on every CPU), ``bf16`` on request. A pair longer
than ``max_length`` loses document tokens first (``truncation="only_second"``); only a query that
alone fills ``max_length`` falls back to ``longest_first``. Documents with the same text are
scored once.

>>> ce = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")    # doctest: +SKIP
>>> ce.rerank(bm25.retrieve("what is bm25", k=100), k=10)               # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError
from rag.core.nodes import BaseReranker
from rag.core.runtime import PRECISIONS, EncoderRuntime, resolve_precision
from rag.core.types import Document, Query
from rerankers._common import doc_text

__all__ = ["ACTIVATIONS", "PRECISIONS", "CrossEncoderReranker"]

ACTIVATIONS = ("auto", "sigmoid", "none")


class CrossEncoderReranker(BaseReranker):
    """Score (query, document) pairs with a sequence-classification model.

    Args:
        model: HF id or local path of a ``*ForSequenceClassification`` checkpoint.
        max_length: tokens per pair after truncation (document side first); capped at the
            model's ``max_position_embeddings``.
        batch_size: pairs per forward pass (after sorting by length).
        activation: ``auto`` (sigmoid for a one-label model, identity otherwise, as
            sentence-transformers does), ``sigmoid`` or ``none`` (raw logits).
        label: which output column is the relevance score for a multi-label model.
        threshold: drop hits scoring below this after reranking (``None`` keeps all).
        precision: ``fp32`` (default, exact on every CPU), ``bf16`` (autocast, faster on
            big batches) or ``auto`` (an alias of ``fp32``).
        device: ``auto`` | ``cpu`` | ``cuda``.
    """

    name: ClassVar[str] = "cross_encoder"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")

    def __init__(
        self,
        model: str,
        max_length: int = 512,
        batch_size: int = 32,
        activation: str = "auto",
        label: int = -1,
        threshold: float | None = None,
        precision: str = "fp32",
        device: str = "auto",
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if max_length < 8 or batch_size < 1:
            raise ConfigError(
                f"max_length must be >= 8 and batch_size >= 1, got {max_length}, {batch_size}"
            )
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.activation = activation
        self.label = label
        self.threshold = self.check_threshold(threshold)
        self.precision = resolve_precision(precision)
        self.device = device

    def _load(self) -> None:
        self.runtime = EncoderRuntime(
            self.model,
            head="classification",
            precision=self.precision,
            device=self.device,
            batch_size=self.batch_size,
            max_batch_tokens=max(self.batch_size * 128, 1024),
            feature="cross-encoder reranking",
        ).load()
        self.tokenizer, self.net, self._device = (
            self.runtime.tokenizer,
            self.runtime.net,
            self.runtime.dev,
        )
        self._torch = self.runtime.torch
        limit = getattr(self.net.config, "max_position_embeddings", None) or self.max_length
        self._max_len = min(self.max_length, int(limit))

    def _truncation(self, query: str) -> str:
        q_len = len(self.tokenizer(query, add_special_tokens=False)["input_ids"])
        fits = q_len + self.tokenizer.num_special_tokens_to_add(pair=True) < self._max_len
        return "only_second" if fits else "longest_first"

    def predict(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Scores ``(N,)`` for ``(query, text)`` pairs, in the order of ``texts``."""
        self.load()
        unique = list(dict.fromkeys(texts))
        if not unique:
            return np.zeros(0, dtype=np.float32)
        enc = self.tokenizer(
            [query] * len(unique),
            unique,
            truncation=self._truncation(query),
            max_length=self._max_len,
        )
        scores = np.zeros(len(unique), dtype=np.float32)

        def forward(net: Any, batch: dict[str, Any]) -> Any:
            return net(**batch).logits.float()

        for pos, _, logits in self.runtime.run(dict(enc), forward):
            scores[pos] = self._activate(logits).cpu().numpy()
        by_text = dict(zip(unique, scores, strict=True))
        return np.array([by_text[t] for t in texts], dtype=np.float32)

    def _activate(self, logits: Any) -> Any:
        """``logits: (B, num_labels)`` -> scores ``(B,)``."""
        one_label = logits.shape[-1] == 1
        if self.activation == "sigmoid" or (self.activation == "auto" and one_label):
            logits = self._torch.sigmoid(logits)
        return logits[:, 0] if one_label else logits[:, self.label]

    def _score(self, query: Query, docs: list[Document]) -> Sequence[float]:
        return self.predict(query.text, [doc_text(d) for d in docs]).tolist()
