"""Deferred imports of optional dependencies with one clear error naming the install command."""

from __future__ import annotations

import importlib
from types import ModuleType

from rag.core.errors import MissingExtraError

# module -> extra that provides it
_EXTRA_OF = {
    "torch": "models",
    "transformers": "models",
    "gguf": "models",
    "accelerate": "models",
    "qdrant_client": "qdrant",
    "langchain_core": "langchain",
    "llama_index": "llamaindex",
    "vllm": "vllm",
    "httpx": "http",
    "matplotlib": "report",
    "pypdf": "ingest",
    "docx": "ingest",
    "html2text": "ingest",
    "ray": "ray",
    "onnxruntime": "onnx",
    "onnx": "onnx",
}


def install_hint(extra: str) -> str:
    if extra == "models":
        return 'pip install torch==2.13.0 && pip install "ragnodes[models]"'
    return f'pip install "ragnodes[{extra}]"'


def require(module: str, extra: str | None = None, feature: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the exact install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        ex = extra or _EXTRA_OF.get(top, top)
        what = f" for {feature}" if feature else ""
        raise MissingExtraError(
            f"{module!r} is needed{what} but is not installed ({e}); run: {install_hint(ex)}"
        ) from None
