"""Learned sparse retrieval, SPLADE-style (Formal et al., "SPLADE: Sparse Lexical and Expansion
Model for First Stage Ranking", SIGIR 2021; "SPLADE v2", 2021).

A masked-language-model head scores every vocabulary term at every input position; a text's
weight for term ``j`` is ``w_j = max_i log(1 + relu(logit_ij))`` over its non-padding positions
(v2's max pooling), so a text becomes a sparse vector over the vocabulary, including terms it
does not contain (expansion). The score is the dot product of query and document vectors,
computed here as one sparse-matrix product over the inverted index (scipy CSR, documents x
vocabulary) and an exact top-k.

This module is also the worked example of "a new retriever is one file" (docs/architecture.md):
the base class owns ids, ``k``, batching, filters-once and ordering; this file fills the five
hooks ``_load``, ``_add``, ``_delete``, ``_search`` and ``_save_state``/``_load_state``, and the
transformer runs through the one encoder runtime (:class:`rag.runtime.EncoderRuntime`, head
``masked_lm``). ``tests/contract_factories.py`` adds one line to put it under the contract suite.

No SPLADE weights install offline here; pass any ``AutoModelForMaskedLM`` checkpoint
(``naver/splade-cocondenser-ensembledistil`` online). ``tests/test_splade.py`` checks the vectors
against sentence-transformers' ``SparseEncoder`` (MLMTransformer + SpladePooling) on a tiny
checkpoint built from a config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.errors import ConfigError
from rag.nodes import BaseRetriever
from rag.types import Document, Query
from retrievers.stores.exact import topk_rows
from retrievers.stores.filters import predicate


class SpladeRetriever(BaseRetriever):
    """First-stage retrieval with a SPLADE (MLM-head) sparse encoder.

    Args:
        model: a masked-LM checkpoint (HF id or local path).
        max_length: tokens per text after truncation.
        batch_size: most texts per forward pass.
        precision: ``fp32`` (exact, default) | ``bf16``.
        fields: ``title+text`` or ``text``.
        top_terms: keep each document's ``top_terms`` heaviest terms (``None``: all non-zero);
            pruning trades a little quality for a smaller index (SPLADE's own practice).
    """

    name: ClassVar[str] = "splade"
    # a ranking holds only documents that share a term with the query (the contract allows it)
    matching_only: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")

    def __init__(
        self,
        model: str,
        max_length: int = 256,
        batch_size: int = 32,
        precision: str = "fp32",
        fields: str = "title+text",
        top_terms: int | None = None,
    ) -> None:
        if fields not in ("title+text", "text"):
            raise ConfigError(f"fields must be 'title+text' or 'text', got {fields!r}")
        if max_length < 1 or batch_size < 1 or (top_terms is not None and top_terms < 1):
            raise ConfigError(
                "max_length, batch_size and top_terms must be >= 1, got "
                f"{max_length}, {batch_size}, {top_terms}"
            )
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.precision = precision
        self.fields = fields
        self.top_terms = top_terms
        self._ids: list[str] = []
        self._matrix: Any = None  # scipy CSR (documents x vocabulary), rows in _ids order

    def _load(self) -> None:
        from rag.runtime import EncoderRuntime

        self._runtime = EncoderRuntime(
            self.model,
            head="masked_lm",
            precision=self.precision,
            batch_size=self.batch_size,
            feature="SpladeRetriever",
        ).load()

    def encode(self, texts: list[str]) -> Any:
        """Sparse term weights ``(len(texts), vocab)`` as scipy CSR (float32)."""
        import scipy.sparse as sp

        self.load()
        rt = self._runtime
        torch = rt.torch
        vocab = rt.net.config.vocab_size
        feats = rt.tokenizer(texts, truncation=True, max_length=self.max_length)
        rows: list[Any] = [None] * len(texts)
        for pos, batch, out in rt.run(dict(feats)):
            w = torch.log1p(torch.relu(out.logits.float()))
            w = w * batch["attention_mask"].unsqueeze(-1).to(w.dtype)
            w = w.max(dim=1).values  # (B, vocab)
            if self.top_terms is not None and self.top_terms < vocab:
                keep = torch.topk(w, self.top_terms, dim=1)
                w = torch.zeros_like(w).scatter_(1, keep.indices, keep.values)
            dense = w.cpu().numpy()
            for r, i in enumerate(pos):
                rows[i] = sp.csr_matrix(dense[r : r + 1])
        if not rows:
            return sp.csr_matrix((0, vocab), dtype=np.float32)
        return sp.vstack(rows, format="csr").astype(np.float32)

    def _text(self, d: Document) -> str:
        return d.full_text if self.fields == "title+text" else d.text

    # -- hooks -----------------------------------------------------------------------------------
    def _add(self, docs: list[Document]) -> None:
        import scipy.sparse as sp

        new = self.encode([self._text(d) for d in docs])
        self._matrix = new if self._matrix is None else sp.vstack([self._matrix, new], "csr")
        self._ids.extend(d.id for d in docs)

    def _delete(self, ids: list[str]) -> None:
        gone = set(ids)
        keep = [r for r, i in enumerate(self._ids) if i not in gone]
        self._matrix = self._matrix[keep]
        self._ids = [self._ids[r] for r in keep]

    def _search(
        self, queries: list[Query], k: int, filter: dict | None
    ) -> list[list[tuple[str, float]]]:
        q = self.encode([x.text for x in queries])
        scores = (q @ self._matrix.T).toarray()  # (Q, N): one sparse product for the batch
        scores = np.where(scores > 0, scores, -np.inf)  # only documents sharing a term
        if filter:
            match = predicate(filter)
            mask = np.array([match(self.documents[i].metadata) for i in self._ids])
            scores = np.where(mask[None, :], scores, -np.inf)
        idx, vals = topk_rows(scores, k)
        return [
            [(self._ids[j], float(v)) for j, v in zip(row_i, row_v) if np.isfinite(v)]
            for row_i, row_v in zip(idx, vals)
        ]

    def _save_state(self, path: Path) -> None:
        import json

        import scipy.sparse as sp

        from rag.persist import atomic_write_text

        if self._matrix is None:
            return
        from rag.index.files import publish

        matrix = self._matrix
        publish(path / "splade.npz", lambda tmp: sp.save_npz(tmp, matrix, compressed=False))
        atomic_write_text(path / "splade_ids.json", json.dumps(self._ids))

    def _load_state(self, path: Path) -> None:
        import json

        import scipy.sparse as sp

        if not (path / "splade.npz").exists():
            return super()._load_state(path)
        self._matrix = sp.load_npz(path / "splade.npz").tocsr()
        self._ids = json.loads((path / "splade_ids.json").read_text(encoding="utf-8"))
