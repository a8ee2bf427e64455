"""Shared fixtures. Threads are pinned before torch is imported: on 2 contended cores OpenMP
busy-waiting can stall, so tests run torch with at most 2 threads and no spin-waiting."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
DATASETS = ("scifact", "cranfield", "cisi", "med", "adi")


def dataset_dir(name: str) -> Path:
    path = SHARED / name
    if not (path / "corpus.jsonl").exists():
        pytest.skip(f"shared dataset {name} not found at {path}")
    return path


@pytest.fixture(scope="session")
def demo_docs():
    from rag.cli import demo_corpus_path
    from rag.persist import read_documents

    return read_documents(demo_corpus_path())


@pytest.fixture(scope="session")
def minilm():
    """One loaded MiniLM encoder for the whole session."""
    import torch

    torch.set_num_threads(2)
    from rag.encoders import TransformerEncoder

    return TransformerEncoder().load()


@pytest.fixture(scope="session")
def smollm():
    import torch

    torch.set_num_threads(2)
    from rag.generators import TransformersGenerator

    return TransformersGenerator(max_new_tokens=48).load()
