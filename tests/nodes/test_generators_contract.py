"""Every registered generator: a factory here, the Generator protocol, a config round-trip, and a
cheap constructor (no model, server or GPU touched until first use)."""

from __future__ import annotations

import pytest

import rag.ingest  # noqa: E402, F401  (registers every node type)
from rag.core.errors import MissingExtraError
from rag.core.nodes import REGISTRY, Generator, Node


def _transformers():
    from rag.generators import TransformersGenerator

    return TransformersGenerator(max_new_tokens=8, stop=["\n"])


def _http():
    from rag.generators import OpenAICompatibleGenerator

    return OpenAICompatibleGenerator(
        base_url="http://127.0.0.1:9/v1", model="m", api_key_env="X_KEY", stop=["\n"]
    )


def _vllm():
    from rag.generators import VLLMGenerator

    return VLLMGenerator(max_new_tokens=8, max_model_len=2048)


def _xrag():
    from rag.generators import XRAGGenerator

    return XRAGGenerator(projector="xrag-projector", max_new_tokens=8)


FACTORIES = {
    "transformers_generator": _transformers,
    "openai_http_generator": _http,
    "vllm_generator": _vllm,
    "xrag_generator": _xrag,
}


def test_every_registered_generator_is_covered():
    names = {n for n, c in REGISTRY.items() if c.kind == "generator"}
    assert names <= set(FACTORIES), f"generators without a factory: {names - set(FACTORIES)}"


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_generator_contract_without_loading(name):
    try:
        gen = FACTORIES[name]()
    except MissingExtraError as e:
        pytest.skip(f"{name}: {e}")
    assert gen.name == name and isinstance(gen, Generator)
    assert not gen._loaded, "the constructor must not load anything"
    again = Node.from_config(gen.to_config())
    assert again == gen and again.to_config() == gen.to_config()
