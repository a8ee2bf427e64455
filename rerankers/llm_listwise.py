"""LLM listwise reranking: the model reads several passages at once and writes a permutation.

Prompt: RankGPT's (Sun et al. 2023, "Is ChatGPT Good at Search?"), passages numbered ``[1]..[m]``,
answer ``[2] > [1] > ...``; template ``prompts/templates/rerank_listwise.txt``, with
``Query.instruction`` when the query has one.

Two modes:

* sliding window (RankGPT / RankZephyr): windows of ``window`` passages move from the bottom of
  the ranking to the top by ``step``, so strong passages bubble up; repeated ``passes`` times.
  Unlike RankGPT's loop, the last window always starts at rank 1 (RankGPT skips the top ranks
  when ``n - window`` is not a multiple of ``step``).
* full list (``full_list=True``): one prompt with every candidate, for long-context models
  (Liu et al. 2024, "Sliding Windows Are Not the End: Exploring Full Ranking with Long-Context
  Large Language Models").

Output text goes through :func:`rerankers.permutation.parse_permutation`, which never raises.
``constrained=True`` (transformers: a LogitsProcessor; vLLM: guided decoding) allows only digits,
``[``, ``]``, ``>``, space and end-of-sequence while decoding.

Scores are rank-derived (:meth:`rag.core.nodes.BaseReranker.rank_scores`): of ``n`` candidates the
first scores ``n``, the last ``1``. Each output ``Ranking.stage`` reads
``llm_listwise:<model>@<backend>-<version>``; its ``Ranking.provenance`` holds the full record
for that query (backend and torch versions, model path and revision, prompt, the windows, how
many answers were repaired, and the raw answers window by window in ``outputs``).

>>> rr = LLMListwiseReranker("smollm2-135m", window=10, step=5)
>>> rr.rerank(ranking, k=10)                                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import prompts
from rag.core.errors import ConfigError
from rag.core.llm import BACKENDS, get_llm
from rag.core.nodes import BaseReranker
from rag.core.types import Query, Ranking
from rerankers._common import (
    doc_text,
    instruction_line,
    template_tag,
)
from rerankers.permutation import mentioned_ids, parse_permutation

ANSWER_CHARS = "0123456789[]> "
# the assistant turn is opened with "[" so that even small models start with an id, not prose
ANSWER_PREFIX = "["


def windows(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """``(start, end)`` slices from the bottom of an ``n``-long list up to the top.

    >>> windows(25, 20, 10)
    [(5, 25), (0, 15)]
    """
    if n <= window:
        return [(0, n)] if n else []
    out, end = [], n
    while True:
        start = max(0, end - window)
        out.append((start, end))
        if start == 0:
            return out
        end -= step


class LLMListwiseReranker(BaseReranker):
    """Rerank by asking an LLM to order passages, window by window or all at once.

    Args:
        model: short name (``smollm2-135m``), HF id or local path of a chat LLM.
        window: passages per prompt in sliding-window mode (RankGPT default 20).
        step: how far the window moves up each time (RankGPT default 10); ``step < window``.
        passes: how many bottom-to-top sweeps.
        full_list: one prompt with every candidate instead of windows.
        max_passage_tokens: each passage is cut to this many tokens.
        batch_size: queries whose windows are generated together.
        constrained: restrict decoding to ``[``, ``]``, ``>``, digits, space and EOS.
        backend: ``auto`` | ``transformers`` | ``vllm``.
        device: for the transformers backend.
    """

    name: ClassVar[str] = "llm_listwise"
    uses_instruction: ClassVar[bool] = True

    def __init__(
        self,
        model: str = "smollm2-135m",
        window: int = 20,
        step: int = 10,
        passes: int = 1,
        full_list: bool = False,
        max_passage_tokens: int = 100,
        batch_size: int = 4,
        constrained: bool = False,
        backend: str = "auto",
        device: str = "auto",
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if window < 2 or not 1 <= step < window:
            raise ConfigError(
                f"need window >= 2 and 1 <= step < window, got window={window}, step={step}"
            )
        counts = {"passes": passes, "batch_size": batch_size}
        for label, v in {**counts, "max_passage_tokens": max_passage_tokens}.items():
            if v < 1:
                raise ConfigError(f"{label} must be >= 1, got {v}")
        self.model = model
        self.window = window
        self.step = step
        self.passes = passes
        self.full_list = full_list
        self.max_passage_tokens = max_passage_tokens
        self.batch_size = batch_size
        self.constrained = constrained
        self.backend = backend
        self.device = device
        self.query_batch_size = batch_size  # the base hands _score_batch this many queries

    def _load(self) -> None:
        self.lm = get_llm(self.backend, self.model, self.device).load()
        self.template = "rerank_listwise"

    def provenance(self) -> dict[str, str]:
        """The LLM's record (backend and versions, model path and revision), prompt and mode."""
        if not self._loaded:
            return {}
        return {
            **self.lm.provenance,
            "model": self.model,  # as configured (the shared runtime may know an alias)
            "prompt": template_tag(self.template),
            "mode": "full_list" if self.full_list else f"window={self.window},step={self.step}",
            "passes": str(self.passes),
        }

    def plan(self, n: int) -> list[tuple[int, int]]:
        """The windows one query of ``n`` candidates goes through, in order, over all passes."""
        one = [(0, n)] if self.full_list else windows(n, self.window, self.step)
        return one * self.passes if n > 1 else []

    def prompt(self, query: Query, passages: Sequence[str]) -> str:
        numbered = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1))
        return prompts.render(
            self.template,
            num=str(len(passages)),
            query=query.text,
            instruction=instruction_line(query),
            passages=numbered,
        )

    def _score_batch(self, group: Sequence[Ranking]) -> list[Sequence[float]]:
        """Run every query's windows in lockstep: window j of all queries in one generate call;
        returns rank-derived scores of each query's final order."""
        # per query, into its output's provenance: the raw answers window by window, the windows
        # and how many of them needed repair
        runs = [self.record(q) for q in range(len(group))]
        for run in runs:
            run.update(outputs=[], windows=0, repaired_windows=0)
        docs = [[h.document for h in r.hits] for r in group]
        cut = self.max_passage_tokens
        texts = [self.lm.truncate([doc_text(d) for d in ds], cut) for ds in docs]
        orders = [list(range(len(ds))) for ds in docs]
        plans = [self.plan(len(ds)) for ds in docs]
        for j in range(max((len(p) for p in plans), default=0)):
            todo = [q for q in range(len(group)) if j < len(plans[q])]
            prompts, sizes = [], []
            for q in todo:
                a, b = plans[q][j]
                prompts.append(self.prompt(group[q].query, [texts[q][i] for i in orders[q][a:b]]))
                sizes.append(b - a)
            budget = max(m * (len(str(m)) + 3) + 8 for m in sizes)
            allowed = ANSWER_CHARS if self.constrained else None
            answers = self.lm.generate(prompts, budget, allowed, prefix=ANSWER_PREFIX)
            for q, m, text in zip(todo, sizes, answers, strict=True):
                a, b = plans[q][j]
                perm = parse_permutation(text, m)
                runs[q]["outputs"].append(text)
                runs[q]["windows"] += 1
                runs[q]["repaired_windows"] += int(len(mentioned_ids(text, m)) < m)
                orders[q][a:b] = [orders[q][a + p] for p in perm]
        return [self.rank_scores(order) for order in orders]
