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
# the judged collections: ../shared/datasets beside the clone, or RAGNODES_DATASETS (a folder of
# BEIR-layout sets, e.g. what `rag eval --dataset scifact --data-dir DIR` downloaded; README)
SHARED = Path(os.environ.get("RAGNODES_DATASETS") or ROOT.parent / "shared" / "datasets")
DATASETS = ("scifact", "cranfield", "cisi", "med", "adi")


def has_dataset(name: str) -> bool:
    return (SHARED / name / "corpus.jsonl").exists()


def needs_dataset(name: str) -> pytest.MarkDecorator:
    """A ``skipif`` mark for a module or test that reads dataset ``name`` (safe at import time)."""
    return pytest.mark.skipif(
        not has_dataset(name), reason=f"dataset {name} not found at {SHARED / name}"
    )


def dataset_dir(name: str) -> Path:
    """The folder of dataset ``name``; skips the calling test when it is absent. Call it inside a
    test or fixture only: at import time the skip would end collection of the whole module."""
    path = SHARED / name
    if not has_dataset(name):
        pytest.skip(f"dataset {name} not found at {path}")
    return path


@pytest.fixture(scope="session")
def demo_docs():
    from rag.app.cli import demo_corpus_path
    from rag.index.persist import read_documents

    return read_documents(demo_corpus_path())


@pytest.fixture(scope="session")
def minilm():
    """One loaded MiniLM encoder for the whole session."""
    import torch

    torch.set_num_threads(2)
    from rag.core.encoders import TransformerEncoder

    return TransformerEncoder().load()


@pytest.fixture(scope="session")
def smollm():
    import torch

    torch.set_num_threads(2)
    from rag.generators import TransformersGenerator

    return TransformersGenerator(max_new_tokens=48).load()
