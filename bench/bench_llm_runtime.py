"""One LLM runtime against one model copy per node: a TransformersGenerator, both LLM rerankers and
an LLM judge on SmolLM2-135M, loaded and run once each, in a fresh process per mode.

* ``shared``: what the library does (:func:`rag.core.llm.get_llm`, one process-wide runtime);
* ``separate``: the peer, what it did before the runtime was shared: the runtime cache is emptied
  before each node loads, so each node loads its own copy.

Prints one JSON object: per mode, weight loads (``from_pretrained`` calls), seconds to load and
run all four, peak RSS (MiB); and the ratios shared / separate.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_llm_runtime.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def run(mode: str) -> dict:
    import torch
    import transformers

    torch.set_num_threads(1)
    from rag.core.llm import forget_llms
    from rag.core.types import Document, Query, Ranking
    from rag.generators import TransformersGenerator
    from rag.pipeline.judges import LLMJudge
    from rerankers import LLMListwiseReranker, LLMPointwiseReranker

    loads = []
    real = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def counted(cls, path, *args, **kwargs):
        loads.append(path)
        return real(cls, path, *args, **kwargs)

    transformers.AutoModelForCausalLM.from_pretrained = classmethod(counted)
    docs = [Document(id=f"d{i}", text=f"Passage {i} about aspirin and fever.") for i in range(4)]
    q = Query(text="What does aspirin do to fever?", id="q")
    ranking = Ranking.from_scored(q, ((d, float(4 - i)) for i, d in enumerate(docs)))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    gen = TransformersGenerator(max_new_tokens=8)
    pointwise = LLMPointwiseReranker(backend="transformers")
    listwise = LLMListwiseReranker(backend="transformers", window=4, step=2)
    judge = LLMJudge(backend="transformers")
    steps = [  # every node stays alive, as in a pipeline
        lambda: gen.generate(q.text),
        lambda: pointwise.rerank(ranking),
        lambda: listwise.rerank(ranking),
        lambda: judge.p_relevant([q.text], ["It lowers it."]),
    ]
    for step in steps:
        if mode == "separate":
            forget_llms()
        step()
    return {
        "loads": len(loads),
        "seconds": round(time.perf_counter() - t, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_mib": round(rss0),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--mode":
        print(json.dumps(run(sys.argv[2])))
        return
    from rag.core.models import resolve_model

    resolve_model("smollm2-135m")  # the fp32 copy exists before either timed run
    out: dict = {"model": "smollm2-135m", "nodes": 4}
    for mode in ("shared", "separate"):
        proc = subprocess.run(
            [sys.executable, __file__, "--mode", mode],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    s, p = out["shared"], out["separate"]
    out["ratio_loads"] = round(s["loads"] / p["loads"], 3)
    out["ratio_seconds"] = round(s["seconds"] / p["seconds"], 3)
    out["ratio_peak_rss"] = round(s["peak_rss_mib"] / p["peak_rss_mib"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
