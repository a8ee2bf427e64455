"""One encoder runtime for every encoder-only transformer in ragnodes.

Dense sentence vectors (:class:`rag.core.encoders.TransformerEncoder`), per-token vectors
(:class:`retrievers.multivector.TokenEncoder`, ColBERT, Khattab & Zaharia 2020) and cross-encoder
scores (:class:`rerankers.CrossEncoderReranker`, Nogueira & Cho 2019) all run through
:class:`EncoderRuntime`: the same loading (:func:`rag.core.models.load_hf`), the same batching and
the same precision policy. A *head* names what the model returns: ``pooled`` and ``token`` read the
last hidden states (``AutoModel``), ``classification`` the logits of
``AutoModelForSequenceClassification``, ``masked_lm`` the vocabulary logits of
``AutoModelForMaskedLM`` (SPLADE-style sparse encoders, Formal et al. 2021).

Precision policy (exact by default, fast on purpose):

* ``fp32`` (default): plain float32 math. Figures are the same on every CPU, whatever its
  instruction set (``tests/core/test_runtime_precision.py`` checks all-MiniLM-L6-v2 on adi: nDCG@10
  0.4975, the published figure).
* ``bf16``: ``torch.autocast`` in bfloat16 (AVX-512-BF16/AMX on CPU, tensor cores on CUDA);
  pooling and normalisation stay float32. Faster on big batches, measurably different figures
  (docs/encoders.md lists the change per collection). Batches under ``bf16_min_tokens`` tokens
  (a single short query) run in float32: on CPU, bf16 costs more than it saves there.
* ``auto``: an alias of ``fp32`` kept for old configs. It used to switch to bf16 on CPUs that
  have it, so the same config gave different numbers on different machines; it no longer
  changes results, and the saved config says ``fp32``.

Batching is by token budget, not by a fixed count: texts are tokenised once, sorted by length
(longest first) and cut into batches whose padded size ``rows x width`` stays under
``max_batch_tokens`` (at most ``batch_size`` rows), so short texts travel in big batches and
long ones in small batches, and padding is at most the length spread inside a batch. Attention
is PyTorch's fused ``scaled_dot_product_attention`` where the model supports it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from rag.core.errors import ConfigError
from rag.core.extras import require
from rag.core.models import load_hf

logger = logging.getLogger("ragnodes.runtime")

PRECISIONS = ("fp32", "bf16", "auto")
HEADS = {
    "pooled": "AutoModel",
    "token": "AutoModel",
    "classification": "AutoModelForSequenceClassification",
    "masked_lm": "AutoModelForMaskedLM",
}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on Arm) from ``/proc/cpuinfo``;
    empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX-512-BF16 or AMX on x86, BF16 on Arm).
    No precision is chosen from it: :func:`warn_if_bf16_emulated` only warns."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


#: the components already warned about in this process (one warning each)
_WARNED: set[str] = set()


def bf16_emulation_reason() -> str | None:
    """Why bfloat16 math would be emulated on this CPU, or None where it is native. Without
    AVX-512-BF16/AMX, torch/oneDNN convert bf16 to float32 around every product: on an AMD EPYC
    with AVX2 (no AVX-512) MiniLM encodes ~6.7x slower in bf16 than in fp32, for ragnodes and
    sentence-transformers alike (``bench/bench_bf16.py``). Torch held to AVX2 kernels
    (``ATEN_CPU_CAPABILITY=avx2``, as in CI's emulation pass) emulates too."""
    if not cpu_has_bf16():
        return "this CPU has no native bfloat16 (no avx512_bf16 or amx_bf16 flag)"
    import os

    cap = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    if cap and not cap.startswith("avx512"):
        return f"torch is held to its {cap} kernels (ATEN_CPU_CAPABILITY={cap})"
    return None


def warn_if_bf16_emulated(what: str, instead: str = "precision='fp32'") -> bool:
    """Warn once per ``what`` (a component name) when bf16 is requested on a CPU that emulates
    it, naming the setting to use ``instead``; True when it warned now."""
    reason = bf16_emulation_reason()
    if reason is None or what in _WARNED:
        return False
    _WARNED.add(what)
    warnings.warn(
        f"{what}: bf16 requested, but {reason}; bf16 is then several times SLOWER than fp32 "
        f"(~6.7x for MiniLM on an AVX2 CPU) and changes scores: use {instead} here",
        RuntimeWarning,
        stacklevel=3,
    )
    return True


def resolve_precision(precision: str) -> str:
    """``fp32`` | ``bf16``; ``auto`` is ``fp32`` (see the module docstring); anything else is a
    :class:`ConfigError`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return "fp32" if precision == "auto" else precision


def token_budget_batches(
    lengths: Sequence[int], max_tokens: int, max_rows: int, multiple: int = 1
) -> list[list[int]]:
    """Indices into ``lengths`` grouped into batches, longest first: each batch's padded size
    ``rows * width`` (width = its longest length rounded up to ``multiple``) is at most
    ``max_tokens`` (a single text always fits) and it has at most ``max_rows`` rows."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    out: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for i in order:
        if not cur:
            width = -(-max(lengths[i], 1) // multiple) * multiple
        elif len(cur) >= max_rows or (len(cur) + 1) * width > max_tokens:
            out.append(cur)
            cur = []
            width = -(-max(lengths[i], 1) // multiple) * multiple
        cur.append(i)
    if cur:
        out.append(cur)
    return out


class EncoderRuntime:
    """Loads one encoder-only transformer and runs length-sorted, token-budget batches.

    Args:
        model: short name (``minilm``), HF id or local path.
        head: ``pooled`` | ``token`` | ``classification`` | ``masked_lm`` (see module doc).
        precision: ``fp32`` (default, exact) | ``bf16`` | ``auto`` (= ``fp32``).
        device: ``auto`` (CUDA if present) | ``cpu`` | ``cuda``.
        batch_size: most rows per forward pass.
        max_batch_tokens: most padded tokens (rows x width) per forward pass.
        bf16_min_tokens: with ``bf16``, smaller CPU batches run in float32.
        feature: named in the error when torch/transformers are missing.
    """

    def __init__(
        self,
        model: str,
        head: str = "pooled",
        precision: str = "fp32",
        device: str = "auto",
        batch_size: int = 32,
        max_batch_tokens: int = 8192,
        bf16_min_tokens: int = 256,
        feature: str = "transformer encoders",
    ) -> None:
        if head not in HEADS:
            raise ConfigError(f"head must be one of {tuple(HEADS)}, got {head!r}")
        if batch_size < 1 or max_batch_tokens < 1:
            raise ConfigError(
                f"batch_size and max_batch_tokens must be >= 1, got {batch_size}, "
                f"{max_batch_tokens}"
            )
        self.model = model
        self.head = head
        self.precision = resolve_precision(precision)
        self.device = device
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.bf16_min_tokens = bf16_min_tokens
        self.feature = feature
        self.net: Any = None
        # inputs cut at max_length by the tokenizer, counted by callers that truncate
        self.truncated = 0
        self.forward_passes = 0

    def load(self) -> EncoderRuntime:
        if self.net is not None:
            return self
        self.torch = require("torch", feature=self.feature)
        kw: dict[str, Any] = {}
        try:
            self.tokenizer, self.net, self.dev = load_hf(
                self.model,
                HEADS[self.head],
                self.device,
                feature=self.feature,
                attn_implementation="sdpa",
                **kw,
            )
        except (ValueError, ImportError):  # a model class without SDPA support
            self.tokenizer, self.net, self.dev = load_hf(
                self.model, HEADS[self.head], self.device, feature=self.feature
            )
        logger.info(
            "encoder %s: head=%s precision=%s device=%s attention=%s",
            self.model,
            self.head,
            self.precision,
            self.dev,
            getattr(self.net.config, "_attn_implementation", "?"),
        )
        if self.precision == "bf16" and self.dev.type == "cpu":
            warn_if_bf16_emulated(f"encoder {self.model}")
        return self

    @property
    def pad_multiple(self) -> int:
        # oneDNN's bf16/AMX kernels are built per input shape: round widths so that length-sorted
        # batches reuse a few; fp32 GEMMs gain nothing from it and it would only add padding
        return 32 if self.precision == "bf16" and self.dev.type == "cpu" else 1

    def autocast(self, n_tokens: int | None = None) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast for ``bf16`` (CPU batches of at least ``bf16_min_tokens``)."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        if self.dev.type == "cpu" and n_tokens is not None and n_tokens < self.bf16_min_tokens:
            return contextlib.nullcontext()
        return self.torch.autocast(self.dev.type, dtype=self.torch.bfloat16)

    def plan(self, lengths: Sequence[int]) -> list[list[int]]:
        return token_budget_batches(
            lengths, self.max_batch_tokens, self.batch_size, self.pad_multiple
        )

    def pad(self, features: dict[str, list[list[int]]], pos: Sequence[int]) -> dict[str, Any]:
        """Tensors ``(B, W)`` for rows ``pos`` of tokenizer output lists, padded on the
        tokenizer's side with its pad id (0 for masks and token types)."""
        torch = self.torch
        ids = features["input_ids"]
        m = self.pad_multiple
        width = -(-max(len(ids[i]) for i in pos) // m) * m
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        pad_id = self.tokenizer.pad_token_id
        out = {}
        for key, rows in features.items():
            if key not in ("input_ids", "attention_mask", "token_type_ids"):
                continue
            fill = (pad_id or 0) if key == "input_ids" else 0
            arr = np.full((len(pos), width), fill, dtype=np.int64)
            for r, i in enumerate(pos):
                row = rows[i]
                if left:
                    arr[r, width - len(row) :] = row
                else:
                    arr[r, : len(row)] = row
            out[key] = torch.from_numpy(arr).to(self.dev)
        if "attention_mask" not in out:
            lens = [len(ids[i]) for i in pos]
            mask = np.zeros((len(pos), width), dtype=np.int64)
            for r, n in enumerate(lens):
                if left:
                    mask[r, width - n :] = 1
                else:
                    mask[r, :n] = 1
            out["attention_mask"] = torch.from_numpy(mask).to(self.dev)
        return out

    def run(
        self,
        features: dict[str, list[list[int]]],
        forward: Callable[[Any, dict[str, Any]], Any] | None = None,
    ) -> Iterator[tuple[list[int], dict[str, Any], Any]]:
        """For each batch: ``(positions, padded inputs, output)``; ``output`` is
        ``forward(net, inputs)`` (default: the model's output object) computed under
        ``inference_mode`` and the precision policy."""
        self.load()
        torch = self.torch
        for pos in self.plan([len(x) for x in features["input_ids"]]):
            batch = self.pad(features, pos)
            n_tokens = int(batch["input_ids"].numel())
            with torch.inference_mode(), self.autocast(n_tokens):
                out = forward(self.net, batch) if forward is not None else self.net(**batch)
            self.forward_passes += 1
            yield pos, batch, out


def pool(hidden: Any, mask: Any, how: str) -> Any:
    """Sentence vectors ``(B, H)`` from ``hidden (B, L, H)``: ``mean`` over non-padding tokens,
    ``cls`` (first token) or ``last`` (last non-padding token, left or right padding)."""
    import torch

    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if how == "cls":
        return hidden[:, 0]
    if bool(mask[:, -1].all()):
        return hidden[:, -1]
    last = mask.sum(1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
