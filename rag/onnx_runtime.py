"""ONNX Runtime backend of the sentence encoder (``TransformerEncoder(backend="onnx")``).

The model is exported once, offline, from the same local weights the torch path loads (the
packaged MiniLM or any local/HF-cached encoder) into ``$RAGNODES_CACHE/onnx/<model>-<hash>/``:

* ``fp32``: the traced graph (``torch.onnx.export``, opset 17, dynamic batch and length), run with
  every ONNX Runtime graph optimisation (``ORT_ENABLE_ALL``: constant folding, attention and
  LayerNorm/GELU fusions). Same vectors as torch fp32 up to float reassociation
  (tests/test_onnx_encoder.py: cosine >= 0.999 per text).
* ``int8``: dynamic quantisation of that graph (``onnxruntime.quantization.quantize_dynamic``,
  int8 weights of the MatMuls, activations quantised per batch at run time; Jacob et al.,
  CVPR 2018). Faster on AVX2/VNNI, and measurably different figures: docs/encoders.md lists the
  nDCG@10 change per collection.

Batching, padding and pooling are the torch runtime's (:class:`rag.runtime.EncoderRuntime`):
only the forward pass runs in ONNX Runtime, on ``threads`` intra-op threads (default 1: the
process's other work and the machine's other processes keep the other cores). Files are published
through the one writer (:func:`rag.models.publish`: temporary name, fsync, rename), so a killed
export leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.extras import require
from rag.models import cache_dir, canonical, load_hf, publish, resolve_model
from rag.runtime import EncoderRuntime

ONNX_PRECISIONS = ("fp32", "int8")
OPSET = 17
_lock = threading.Lock()


def _require_ort() -> Any:
    return require("onnxruntime", extra="onnx", feature='the ONNX encoder backend (backend="onnx")')


def export_folder(model: str) -> Path:
    """Where the exported graphs of ``model`` live: keyed by the model's name and its weights'
    folder and config, so another model or another version exports again."""
    path = resolve_model(model)
    h = hashlib.sha256(str(Path(path).resolve() if Path(path).exists() else path).encode())
    cfg = Path(path) / "config.json"
    if cfg.exists():
        h.update(cfg.read_bytes())
    name = canonical(model).replace("/", "--")
    return cache_dir() / "onnx" / f"{name}-{h.hexdigest()[:12]}"


def _export_fp32(model: str, out: Path) -> None:
    """Trace the encoder into ``out`` (eager attention, the padding mask as an additive 4D bias:
    both trace into shape-free ONNX ops)."""
    torch = require("torch", feature="ONNX export")
    _, net, _ = load_hf(model, "AutoModel", "cpu", feature="ONNX export",
                        attn_implementation="eager")

    class Hidden(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(
                torch.float32
            ).min
            return self.net(
                input_ids=input_ids, attention_mask=bias, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "length"} for n in [*names, "last_hidden_state"]}

    def produce(tmp: Path) -> None:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                Hidden(net).eval(), (ids, mask, torch.zeros_like(ids)), str(tmp),
                input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
                opset_version=OPSET, dynamo=False,
            )

    publish(out, produce)


def _quantize(src: Path, out: Path) -> None:
    _require_ort()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    publish(out, lambda tmp: quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8))


def exported(model: str, precision: str) -> Path:
    """The ONNX graph of ``model`` at ``precision`` (``fp32`` | ``int8``), exported on first use."""
    if precision not in ONNX_PRECISIONS:
        raise ConfigError(
            f"backend='onnx' runs precision {ONNX_PRECISIONS}, got {precision!r}"
        )
    _require_ort()
    folder = export_folder(model)
    fp32, target = folder / "model.fp32.onnx", folder / f"model.{precision}.onnx"
    with _lock:
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            if not fp32.exists():
                _export_fp32(model, fp32)
            if precision == "int8" and not target.exists():
                _quantize(fp32, target)
    return target


class OnnxEncoderRuntime(EncoderRuntime):
    """:class:`EncoderRuntime` whose forward pass is an ONNX Runtime session (head ``pooled``:
    the last hidden states). ``precision`` is ``fp32`` or ``int8``; ``threads`` the session's
    intra-op threads."""

    def __init__(
        self,
        model: str,
        precision: str = "fp32",
        batch_size: int = 32,
        max_batch_tokens: int = 8192,
        threads: int = 1,
    ) -> None:
        super().__init__(model, head="pooled", precision="fp32", device="cpu",
                         batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                         feature="the ONNX encoder backend")
        if precision not in ONNX_PRECISIONS:
            raise ConfigError(f"backend='onnx' runs precision {ONNX_PRECISIONS}, got {precision!r}")
        self.onnx_precision = precision
        self.threads = threads
        self.session: Any = None

    def load(self) -> OnnxEncoderRuntime:
        if self.session is not None:
            return self
        ort = _require_ort()
        path = exported(self.model, self.onnx_precision)
        super().load()  # tokenizer, config and torch (pooling stays in torch)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        return self

    def run(
        self,
        features: dict[str, list[list[int]]],
        forward: Callable[[Any, dict[str, Any]], Any] | None = None,
    ) -> Iterator[tuple[list[int], dict[str, Any], Any]]:
        """For each batch: ``(positions, padded inputs, last hidden states (B, L, H) fp32)``;
        ``forward`` is not used (the graph computes the last hidden states)."""
        self.load()
        torch = self.torch
        for pos in self.plan([len(x) for x in features["input_ids"]]):
            batch = self.pad(features, pos)
            if "token_type_ids" not in batch:
                batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
            feed = {k: v.numpy() for k, v in batch.items() if k in self.inputs}
            hidden = self.session.run(["last_hidden_state"], feed)[0]
            self.forward_passes += 1
            yield pos, batch, torch.from_numpy(hidden)
