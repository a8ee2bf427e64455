"""bf16 asked for on a CPU that emulates it warns once, with the reason (issue #27): without
AVX-512-BF16/AMX, torch converts bf16 around every product and MiniLM encodes ~6.7x slower than
in fp32 (bench/bench_bf16.py). Only the CPU-flag probe is replaced here; the runtime, the encoder
and the MaxSim kernel under test are real."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
from rag.core import runtime  # noqa: E402
from rag.core.encoders import TransformerEncoder  # noqa: E402
from retrievers.kernels.maxsim import PackedTokens  # noqa: E402

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})  # this project's AMD EPYC
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):
    """Set the flags the probe reports; a fresh once-per-process memory; no torch ISA cap."""
    monkeypatch.setattr(runtime, "_WARNED", set())
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)

    def set_flags(flags: frozenset[str]) -> None:
        monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)

    return set_flags


def _emulation_warnings(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)
            and "bf16" in str(w.message)]


def test_encoder_bf16_warns_once_on_an_avx2_cpu(cpu) -> None:
    cpu(AVX2)
    enc = TransformerEncoder(precision="bf16", cache=None)
    first = _emulation_warnings(enc.load)
    assert len(first) == 1 and "no native bfloat16" in first[0] and "fp32" in first[0]
    assert enc.encode(["bf16 still works"]).shape == (1, 384)
    # once per process: the next bf16 runtime of this model stays quiet
    name = f"encoder {enc.runtime.model}"
    assert _emulation_warnings(lambda: runtime.warn_if_bf16_emulated(name)) == []


def test_no_warning_where_bf16_is_native(cpu, monkeypatch) -> None:
    cpu(SAPPHIRE_RAPIDS)
    assert runtime.cpu_has_bf16() and runtime.bf16_emulation_reason() is None
    enc = TransformerEncoder(precision="bf16", cache=None)
    assert _emulation_warnings(enc.load) == []
    t = np.eye(4, dtype=np.float32)
    assert _emulation_warnings(lambda: PackedTokens(t, np.array([0, 2, 4]), "bf16")) == []
    # the same CPU with torch held to AVX2 kernels (CI's emulation pass) emulates bf16
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert "ATEN_CPU_CAPABILITY=avx2" in runtime.bf16_emulation_reason()


def test_bf16_maxsim_kernel_warns_and_still_scores(cpu) -> None:
    cpu(AVX2)
    t = np.eye(4, dtype=np.float32)
    got: list[PackedTokens] = []
    msgs = _emulation_warnings(lambda: got.append(PackedTokens(t, np.array([0, 2, 4]), "bf16")))
    assert len(msgs) == 1 and msgs[0].startswith("MaxSim kernel: bf16 requested")
    assert "kernel='float32'" in msgs[0]
    assert got[0].scores(t[:1], np.array([0, 1])).tolist() == [[1.0, 0.0]]
    assert _emulation_warnings(lambda: PackedTokens(t, np.array([0, 4]), "float32")) == []


def test_cpu_flags_reads_this_machine() -> None:
    flags = runtime.cpu_flags()
    assert isinstance(flags, frozenset)
    if flags:  # Linux: the probe sees the same flags /proc/cpuinfo lists
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
        assert all(f" {flag}" in text for flag in list(flags)[:20])
        assert runtime.cpu_has_bf16() == bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)
