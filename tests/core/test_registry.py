"""Node types register from above: ``rag.core`` imports no node package (no importlib registry),
importing ``rag.pipeline`` registers every type a pipeline composes, ``rag.ingest`` adds the
chunker and the situator, and ``rag.app.register_all`` (called by the CLI) registers all. A type
looked up before its package is imported is one line that says what to import. Each case runs in
a fresh interpreter, since this process has imported everything already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def registered_after(module: str) -> list[str]:
    r = run(f"import json, {module}\nfrom rag.core.nodes import REGISTRY\n"
            "print(json.dumps(sorted(REGISTRY)))")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_core_imports_no_node_package():
    r = run(
        "import json, sys\nimport rag, rag.core.nodes, rag.core.config, rag.core.encoders\n"
        # not rag.index: the package root wires core's caches to its one writer (rag/__init__)
        "above = ('retrievers', 'rerankers', 'prompts', 'evals', 'rag.generators', "
        "'rag.compressors', 'rag.pipeline', 'rag.ingest', 'rag.app')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(above))))"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_a_type_looked_up_before_its_package_is_imported_says_what_to_import():
    r = run("from rag.core.nodes import Node\nNode.from_config({'type': 'bm25'})")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("rag.core.errors.ConfigError: unknown node type 'bm25'"), last
    assert "import rag.pipeline" in last


def test_importing_a_layer_registers_the_node_types_it_composes():
    pipeline = registered_after("rag.pipeline")
    assert {"bm25", "dense", "hybrid", "cross_encoder", "late_interaction",
            "transformers_generator", "extractive_compressor", "remote_encoder",
            "transformer_encoder", "chunk_context", "pipeline"} <= set(pipeline)
    ingest = registered_after("rag.ingest")
    assert sorted(set(ingest) - set(pipeline)) == ["chunker", "situator"]
    assert registered_after("rag.app; rag.app.register_all()") == ingest
    # a typo after registration keeps the short message, with the known types
    r = run("import rag.pipeline\nfrom rag.core.nodes import Node\n"
            "Node.from_config({'type': 'bm52'})")
    last = r.stderr.strip().splitlines()[-1]
    assert "unknown node type 'bm52'; known types: " in last and "import rag" not in last
