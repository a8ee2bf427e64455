"""The import graph points one way: no module of the five packages imports (directly or through
others) a module that imports it back, and the core at the bottom of ``rag/`` imports nothing
above it. Every ``import`` counts, also those inside functions: a deferred import is still a
dependency, it only hides the cycle from the interpreter.

``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.
The implicit import of a package's ``__init__`` by its submodules is not counted (a package
re-exporting its own modules is not a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rag", "retrievers", "rerankers", "prompts", "evals")
# The bottom layer: value types, errors, the node contract and its configs, model resolution,
# and the index layer's writing half (files, segments, manifest, validation). It may import only
# itself (and third-party packages). Opening an index (rag.index.opening, rag.persist) needs the
# node registry, so it sits above rag.nodes.
CORE = {
    "rag.types",
    "rag.errors",
    "rag.nodes",
    "rag.config",
    "rag.extras",
    "rag.models",
    "rag.llm",
    "rag.llm.base",
    "rag.llm.cache",
    "rag.llm.hf",
    "rag.llm.http",
    "rag.llm.vllm",
    "rag.index.io",
    "rag.index.docstore",
    "rag.index.files",
    "rag.index.folder",
    "rag.index.leases",
    "rag.index.validate",
}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    mods = _modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join(here + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            for t in targets:
                k = known(t)
                if k and k != mod and not mod.startswith(k + "."):
                    graph[mod].add(k)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_module_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_core_imports_nothing_above_it():
    graph = import_graph()
    missing = CORE - set(graph)
    assert not missing, f"core modules not found: {missing}"
    up = {m: sorted(graph[m] - CORE) for m in sorted(CORE) if graph[m] - CORE}
    assert up == {}, f"core modules importing upward: {up}"


def test_the_checker_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
