"""The compressor base class: owns the loop, the token accounting and the new-ranking rules.

A concrete compressor fills in one hook, ``_plan(ranking) -> list[Kept]``: which hits to keep, in
which output order, with which (possibly shortened) text. Hits not listed are dropped. The base
class then measures every text with a real tokenizer and writes, on every output document,

    metadata["compression"] = {
        "method", "tokens_in", "tokens_out", "ratio" (= tokens_out / tokens_in, 1.0 when empty),
        "budget" (tokens allowed, or None when the node sets no token budget),
        "ranking_tokens_in", "ranking_tokens_out", "ranking_ratio",   # the whole ranking,
        ...node-specific keys (kept sentence indices, skipped reason, ...),  # dropped docs count in
        "previous": the record of an earlier compressor, when the input already had one,
    }

Inputs are never mutated: each output hit holds a new Document built with ``model_copy``. Scores
are carried over unchanged; reordering nodes (MMR, lost-in-the-middle) therefore return hits that
are not sorted by score, on purpose: their order is the order a generator should read them in.

>>> from rag.compressors import LostInTheMiddleReorder
>>> LostInTheMiddleReorder().compress(ranking).ids    # doctest: +SKIP
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from rag.core.errors import ConfigError
from rag.core.extras import require
from rag.core.models import offline_hint, resolve_model
from rag.core.nodes import Node
from rag.core.types import Document, Hit, Query, Ranking


class Kept(NamedTuple):
    """One output hit of a compressor's plan: the input hit, its new text, extra metadata."""

    hit: Hit
    text: str
    info: dict[str, Any]


@functools.lru_cache(maxsize=4)
def load_tokenizer(model: str) -> Any:
    """A (cached) Hugging Face tokenizer for ``model`` (short name, HF id or local path)."""
    transformers = require("transformers", feature="compressors")
    try:
        return transformers.AutoTokenizer.from_pretrained(resolve_model(model))
    except OSError as e:
        raise offline_hint(model, e) from e


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens per text, without special tokens and without truncation."""
    if not texts:
        return []
    ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return [len(x) for x in ids]


def check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"ratio must be a number in (0, 1], got {ratio!r}")
    return float(ratio)


def check_max_tokens(max_tokens: int | None) -> int | None:
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ConfigError(f"max_tokens must be an int >= 1 or None, got {max_tokens!r}")
    return max_tokens


def token_budget(tokens_in: int, ratio: float, max_tokens: int | None) -> int:
    """``max_tokens`` when given, else ``floor(ratio * tokens_in)``."""
    return max_tokens if max_tokens is not None else int(ratio * tokens_in)


def query_text(q: Query, use_instruction: bool = True) -> str:
    """The query text, followed by its instruction when it has one."""
    return f"{q.text} {q.instruction}" if use_instruction and q.instruction else q.text


class BaseCompressor(Node):
    """Owns batching, empty rankings and the ``metadata["compression"]`` accounting.

    Subclasses set ``name`` and implement ``_plan``. ``tokenizer`` (an init parameter of each
    subclass) names the tokenizer that measures the achieved ratio; ``uses_instruction`` says
    whether ``Query.instruction`` changes the output.
    """

    kind: ClassVar[str] = "compressor"
    uses_instruction: ClassVar[bool] = False
    tokenizer: str | None = "minilm"

    def _load(self) -> None:
        self._tok = load_tokenizer(self.tokenizer or "minilm")

    def _count(self, texts: Sequence[str]) -> list[int]:
        return count_tokens(self._tok, texts)

    def compress(self, ranking: Ranking) -> Ranking:
        return self.compress_batch([ranking])[0]

    def compress_batch(self, rankings: Sequence[Ranking]) -> list[Ranking]:
        self.load()
        out = []
        for r in rankings:
            if not r.hits:
                out.append(Ranking(query=r.query, stage=self.name))
                continue
            out.append(self._finish(r, self._plan(r)))
        return out

    def _finish(self, ranking: Ranking, plan: list[Kept]) -> Ranking:
        ins = self._count([h.document.text for h in ranking.hits])
        by_id = dict(zip(ranking.ids, ins))
        outs = self._count([k.text for k in plan])
        total_in, total_out = sum(ins), sum(outs)
        hits = []
        for k, n_out in zip(plan, outs):
            doc: Document = k.hit.document
            n_in = by_id[doc.id]
            info = {
                "method": self.name,
                "tokens_in": n_in,
                "tokens_out": n_out,
                "ratio": n_out / n_in if n_in else 1.0,
                "budget": None,
                **k.info,
                "ranking_tokens_in": total_in,
                "ranking_tokens_out": total_out,
                "ranking_ratio": total_out / total_in if total_in else 1.0,
            }
            if "compression" in doc.metadata:  # an earlier compressor's record stays traceable
                info["previous"] = doc.metadata["compression"]
            new = doc.model_copy(
                update={"text": k.text, "metadata": {**doc.metadata, "compression": info}}
            )
            hits.append(Hit(document=new, score=k.hit.score))
        return Ranking(query=ranking.query, hits=tuple(hits), stage=self.name)

    def _plan(self, ranking: Ranking) -> list[Kept]:
        raise NotImplementedError


@functools.lru_cache(maxsize=1)
def default_encoder() -> Any:
    """One loaded MiniLM encoder shared by every compressor that was given none."""
    from rag.core.encoders import TransformerEncoder

    return TransformerEncoder().load()


class EncoderMixin:
    """Lazily loads a :class:`~rag.core.encoders.TransformerEncoder` (shared MiniLM unless
    given)."""

    encoder: Any

    def _load(self) -> None:
        super()._load()  # type: ignore[misc]  # the compressor's tokenizer
        self._enc = self.encoder.load() if self.encoder is not None else default_encoder()


# -- sentence splitting -------------------------------------------------------------------------
_BOUNDARY = re.compile(r"([.!?][\"')\]]*)\s+(?=[\"'(\[]*[A-Z0-9])|\n\s*\n")
_ABBREV = {
    "e.g.", "i.e.", "al.", "etc.", "fig.", "figs.", "vs.", "dr.", "mr.", "mrs.", "ms.", "prof.",
    "no.", "approx.", "ca.", "cf.", "eq.", "ref.", "refs.", "st.", "jr.", "sr.", "inc.", "u.s.",
}  # fmt: skip


def split_sentences(text: str) -> list[str]:
    """Split on ``. ! ?`` followed by space and a capital/digit, or on blank lines.

    Common abbreviations (``e.g.``, ``et al.``, ``Fig.``) and single initials (``J. Smith``) do not
    end a sentence. Sentences keep their original characters (stripped) and their order.

    >>> split_sentences("BM25 is old (Robertson et al. 1994). It works. See Fig. 2 for more.")
    ['BM25 is old (Robertson et al. 1994).', 'It works.', 'See Fig. 2 for more.']
    """
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        end = m.end(1) if m.group(1) else m.start()
        head = text[start:end].strip()
        last = head.rsplit(None, 1)[-1].lower() if head else ""
        if m.group(1) and (last in _ABBREV or re.fullmatch(r"[a-z]\.", last)):
            continue
        if head:
            out.append(head)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out
