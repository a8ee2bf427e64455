"""Token pruning by surprise under a small causal LM (LLMLingua-style, question-agnostic).

After LLMLingua (Jiang, Wu, Lin, Yang & Qiu, 2023, "LLMLingua: Compressing Prompts for Accelerated
Inference of Large Language Models", EMNLP, arXiv:2310.05736), without its budget controller and
iterative segment-wise re-scoring: each token ``x_t`` of a document gets the surprise
``s_t = -log p(x_t | <bos>, x_<t)`` under SmolLM2-135M, and the ``B`` most surprising tokens are
kept in their original order, ``B = max_tokens or floor(ratio * n_tokens)``. Long documents are
scored in independent windows of ``window`` tokens.

The kept token ids are decoded and the decoded text is *re-tokenized* to measure ``tokens_out``, so
the reported ratio is the achieved one (byte-level BPE merges can make it differ from the requested
one, as LLMLingua's does). Documents shorter than ``min_tokens`` are passed through uncompressed and
say so in ``metadata["compression"]["skipped"]`` (LLMLingua skips them silently, microsoft/LLMLingua
issue #196).

>>> TokenPruningCompressor(ratio=0.5).compress(ranking)     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rag.compressors.base import (
    BaseCompressor,
    Kept,
    check_max_tokens,
    check_ratio,
    token_budget,
)
from rag.core.errors import ConfigError
from rag.core.types import Ranking


class TokenPruningCompressor(BaseCompressor):
    """Drop the least surprising tokens of each document (per-document budget).

    Args:
        ratio: budget as a share of each document's tokens (ignored when ``max_tokens`` is set).
        max_tokens: absolute budget in tokens per document.
        min_tokens: documents with fewer tokens are not compressed (recorded as skipped).
        model: causal LM (short name, HF id or path) used when ``generator`` is None.
        generator: a :class:`~rag.generators.TransformersGenerator` whose ``.lm`` and
            ``.tokenizer`` are reused (no second copy of the model is loaded).
        window: tokens scored per forward pass.
        batch_size: windows per forward pass.
    """

    name: ClassVar[str] = "token_pruning_compressor"

    def __init__(
        self,
        ratio: float = 0.5,
        max_tokens: int | None = None,
        min_tokens: int = 16,
        model: str = "smollm2-135m",
        generator: Any = None,
        window: int = 512,
        batch_size: int = 8,
    ) -> None:
        if min_tokens < 0 or window < 2 or batch_size < 1:
            raise ConfigError(
                f"need min_tokens >= 0, window >= 2, batch_size >= 1; "
                f"got {min_tokens}, {window}, {batch_size}"
            )
        self.ratio = check_ratio(ratio)
        self.max_tokens = check_max_tokens(max_tokens)
        self.min_tokens = min_tokens
        self.model = model
        self.generator = generator
        self.window = window
        self.batch_size = batch_size

    def _load(self) -> None:
        gen = self.generator
        if gen is None:
            from rag.generators import TransformersGenerator

            gen = TransformersGenerator(model=self.model)
        self._gen = gen.load()
        self._tok = self._gen.tokenizer  # ratios are measured in the LM's own tokens
        self._torch = self._gen._torch

    def surprise(self, ids: list[list[int]]) -> list[np.ndarray]:
        """``-log p(x_t | <bos>, x_<t)`` per token: one float array ``(n_i,)`` per id list."""
        self.load()
        torch, lm = self._torch, self._gen.lm
        bos = self._tok.bos_token_id
        bos = bos if bos is not None else self._tok.eos_token_id
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else bos
        step = self.window - 1
        chunks = [
            (i, s, x[s : s + step]) for i, x in enumerate(ids) for s in range(0, len(x), step)
        ]
        out = [np.zeros(len(x), dtype=np.float32) for x in ids]
        chunks.sort(key=lambda c: -len(c[2]))
        for b in range(0, len(chunks), self.batch_size):
            batch = chunks[b : b + self.batch_size]
            width = 1 + max(len(c[2]) for c in batch)
            inp = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(inp)
            for r, (_, _, c) in enumerate(batch):
                inp[r, : len(c) + 1] = torch.tensor([bos, *c])
                mask[r, : len(c) + 1] = 1
            with torch.inference_mode():
                logits = lm(input_ids=inp.to(lm.device), attention_mask=mask.to(lm.device)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            nll = -logp.gather(-1, inp[:, 1:, None].to(lm.device))[..., 0].cpu().numpy()
            for r, (i, s, c) in enumerate(batch):
                out[i][s : s + len(c)] = nll[r, : len(c)]
        return out

    def _plan(self, ranking: Ranking) -> list[Kept]:
        texts = [h.document.text for h in ranking.hits]
        ids = self._tok(texts, add_special_tokens=False, verbose=False)["input_ids"]
        todo = [i for i, x in enumerate(ids) if len(x) >= max(self.min_tokens, 1)]
        scores = dict(zip(todo, self.surprise([ids[i] for i in todo])))
        plan = []
        for i, hit in enumerate(ranking.hits):
            if i not in scores:
                info = {"skipped": f"{len(ids[i])} tokens < min_tokens={self.min_tokens}"}
                plan.append(Kept(hit, texts[i], info))
                continue
            budget = token_budget(len(ids[i]), self.ratio, self.max_tokens)
            order = np.argsort(-scores[i], kind="stable")[:budget]
            kept = [ids[i][t] for t in sorted(order.tolist())]
            text = self._tok.decode(kept, skip_special_tokens=True).strip()
            plan.append(Kept(hit, text, {"budget": budget, "tokens_kept": len(kept)}))
        return plan
