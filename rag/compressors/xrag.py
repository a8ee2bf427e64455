"""xRAG compressor: each retrieved document becomes one ``<xRAG:...>`` token (its embedding).

Cheng et al., "xRAG: Extreme Context Compression for Retrieval-augmented Generation with One
Token", NeurIPS 2024 (arXiv:2405.13792). The document ``title + " " + text`` is embedded by a frozen
dense encoder (MiniLM, as :class:`retrievers.DenseRetriever` embeds it) and its text replaced by
the token of :func:`rag.generators.xrag_projector.encode_token`. Only
:class:`rag.generators.xrag.XRAGGenerator` can read the token (it splices the projected embedding in
at that position).

The title stays (as every compressor keeps it) unless ``drop_title=True``, which moves it to
``metadata["xrag_title"]`` so that nothing of the document is sent as text.

Accounting (``metadata["compression"]``): ``tokens_in`` = the document text in ``tokenizer``,
``tokens_out`` = 1 (one input position of the LLM).

>>> XRAGCompressor().compress(ranking).hits[0].document.text[:6]   # doctest: +SKIP
'<xRAG:'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rag.compressors.base import BaseCompressor, EncoderMixin, Kept
from rag.core.errors import ConfigError
from rag.core.types import Ranking
from rag.generators.xrag_projector import TOKEN_RE, encode_token


class XRAGCompressor(EncoderMixin, BaseCompressor):
    """Replace every document by one xRAG token.

    Args:
        encoder: the frozen retriever encoder (a ``TransformerEncoder``; default packaged MiniLM,
            the one the shipped projector recipe is trained on).
        tokenizer: the tokenizer that counts ``tokens_in``.
        drop_title: also remove the title (kept in ``metadata["xrag_title"]``).
    """

    name: ClassVar[str] = "xrag"

    def __init__(
        self, encoder: Any = None, tokenizer: str = "minilm", drop_title: bool = False
    ) -> None:
        from rag.core.encoders import TransformerEncoder

        if encoder is not None and not isinstance(encoder, TransformerEncoder):
            raise ConfigError(f"encoder must be a TransformerEncoder, got {type(encoder).__name__}")
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.drop_title = bool(drop_title)

    def _count(self, texts: Sequence[str]) -> list[int]:
        return [1 if TOKEN_RE.fullmatch(t) else n for t, n in zip(texts, super()._count(texts))]

    def _plan(self, ranking: Ranking) -> list[Kept]:
        docs = [h.document for h in ranking.hits]
        vecs = self._enc.encode([d.full_text for d in docs], kind="document")
        return [Kept(h, encode_token(v), {}) for h, v in zip(ranking.hits, vecs, strict=True)]

    def compress_batch(self, rankings: Sequence[Ranking]) -> list[Ranking]:
        out = super().compress_batch(rankings)
        if not self.drop_title:
            return out
        for n, c in enumerate(out):
            hits = []
            for h in c.hits:
                meta = {**h.document.metadata, "xrag_title": h.document.title}
                doc = h.document.model_copy(update={"title": "", "metadata": meta})
                hits.append(h.model_copy(update={"document": doc}))
            out[n] = c.model_copy(update={"hits": tuple(hits)})
        return out
