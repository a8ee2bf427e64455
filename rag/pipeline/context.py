"""What the generator is shown, and what its citations are worth: neighbour expansion of chunk
hits, a context budget in the generator's own tokens, and a support check of every citation
against the span it points at.

* **Budget.** Sources are added best first while ``prompt + sources + max_new_tokens`` fits the
  generator's window (``max_position_embeddings`` of a local model, else ``budget_tokens``);
  a source that does not fit is left out, never cut mid-way; the real chat-templated prompt is
  then counted and the last sources dropped until it fits. ``rag ask -k 1000`` on cisi thus
  builds an 8,013-token prompt (48 sources) instead of a 153,146-token one.
* **Citations to the span.** Each citation gets the source ``path``, the character ``span``
  ``[start, end)`` into the source text, the ``page`` (PDF) and the ``heading``, so ``rag ask``
  prints ``path#heading`` or ``path:page``.
* **Support.** The sentence(s) carrying marker ``[n]`` are judged against the cited span with a
  judge ragnodes already has (:class:`rag.pipeline.judges.LexicalJudge`, the default, or
  :class:`rag.pipeline.judges.LLMJudge` with ``judge="llm"``), in the spirit of ALCE's citation
  precision (Gao et al., EMNLP 2023); below ``support_threshold`` the citation is marked
  ``supported=False`` and its marker listed in ``Answer.unsupported_markers``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from rag.core.errors import ConfigError
from rag.core.nodes import Node
from rag.core.types import Answer, Citation, Hit, Query
from rag.pipeline.citations import locate, parse_markers
from rag.pipeline.parents import chunk_documents, expand_neighbours, merge_adjacent, trim_headings

JUDGES = ("lexical", "llm", "none")
_SENT = re.compile(r"(?<=[.!?])\s+")
_MARK = re.compile(r"\[[0-9][0-9,;\s\-–]*\]")
DEFAULT_WINDOW = 8192


def generator_window(gen: Any) -> int | None:
    """Context window (tokens) of a loaded local generator, or ``None`` when unknown."""
    lm = getattr(gen, "lm", None)
    cfg = getattr(lm, "config", None)
    n = getattr(cfg, "max_position_embeddings", None)
    return int(n) if n else None


class ChunkContext(Node):
    """Build the generator's sources from chunk hits and check citations (module docstring).

    Args:
        neighbours: chunks before and after each hit added and merged (0: merge only).
        budget_tokens: the window to fit when the generator does not tell its own.
        judge: ``lexical`` | ``llm`` | ``none``.
        support_threshold: a citation whose support is below this is flagged.
    """

    name: ClassVar[str] = "chunk_context"
    kind: ClassVar[str] = "context"

    def __init__(
        self,
        neighbours: int = 1,
        budget_tokens: int = DEFAULT_WINDOW,
        judge: str = "lexical",
        support_threshold: float = 0.5,
    ) -> None:
        if neighbours < 0:
            raise ConfigError(f"neighbours must be >= 0, got {neighbours}")
        if budget_tokens < 256:
            raise ConfigError(f"budget_tokens must be >= 256, got {budget_tokens}")
        if judge not in JUDGES:
            raise ConfigError(f"judge must be one of {JUDGES}, got {judge!r}")
        self.neighbours = neighbours
        self.budget_tokens = budget_tokens
        self.judge = judge
        self.support_threshold = support_threshold

    # -- sources ------------------------------------------------------------------------------
    def build(self, pipe: Any, q: Query, hits: Sequence[Hit]) -> list[Hit]:
        """Expand/merge chunk hits, then keep the best ones that fit the generator's window."""
        if self.neighbours:
            hits = expand_neighbours(hits, chunk_documents(pipe.retriever), self.neighbours)
        else:
            hits = merge_adjacent(hits)
        return self.fit(pipe, q, [trim_headings(h) for h in hits])

    def fit(self, pipe: Any, q: Query, hits: Sequence[Hit]) -> list[Hit]:
        from rag.pipeline import format_sources

        gen = pipe.generator
        if gen is not None and hasattr(gen, "load"):
            gen.load()
        tok = getattr(gen, "tokenizer", None)

        def count(text: str) -> int:
            if tok is None:
                return len(text) // 3 + 1  # a conservative estimate for unknown tokenizers
            return len(tok(text, add_special_tokens=False)["input_ids"])

        window = generator_window(gen) or self.budget_tokens
        new_tokens = int(getattr(gen, "max_new_tokens", 256) or 256)
        base = sum(count(m["content"]) + 8 for m in pipe._messages(q, []))
        left = window - new_tokens - base
        kept: list[Hit] = []
        for h in hits:
            cost = count(format_sources([h], pipe.max_source_chars)) + 1
            if cost <= left:
                kept.append(h)
                left -= cost
        # the sum of parts misses the chat template's and the separators' tokens: check the
        # real prompt and drop the last sources until it fits
        exact = getattr(gen, "prompt_ids", None)
        while kept and exact is not None:
            n = int(exact(pipe._messages(q, kept))["input_ids"].shape[-1])
            if n + new_tokens <= window:
                break
            kept.pop()
        return kept

    # -- citations ----------------------------------------------------------------------------
    def _judge(self) -> Any:
        if not hasattr(self, "_judge_obj"):
            from rag.pipeline.judges import LexicalJudge, LLMJudge

            self._judge_obj = LexicalJudge() if self.judge == "lexical" else LLMJudge()
        return self._judge_obj

    @staticmethod
    def citing_text(text: str, marker: int) -> str:
        """The sentences of ``text`` that carry ``[marker]``, markers removed (all of the text
        when the marker was attributed rather than written)."""
        sents = [s for s in _SENT.split(text) if marker in parse_markers(s)]
        return _MARK.sub("", " ".join(sents) if sents else text).strip()

    def check(self, answer: Answer) -> Answer:
        """Answer with every citation located (path, span, page, heading) and judged."""
        cites: list[Citation] = []
        bad: list[int] = []
        judge = None if self.judge == "none" else self._judge()
        for c in answer.citations:
            hit = answer.contexts[c.marker - 1]
            upd: dict[str, Any] = locate(hit.document)  # the one builder (rag.pipeline.citations)
            claim = self.citing_text(answer.text, c.marker)
            if judge is not None and claim:
                p = float(judge.p_support([hit.document.text], [claim])[0])
                upd.update(support=round(p, 4), judge=judge.name)
                upd["supported"] = p >= self.support_threshold
                if not upd["supported"]:
                    bad.append(c.marker)
            cites.append(c.model_copy(update=upd))
        return answer.model_copy(
            update={"citations": tuple(cites), "unsupported_markers": tuple(bad)}
        )
