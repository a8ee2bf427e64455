"""The layers of the house, checked on the import graph.

Layers, bottom to top (``docs/architecture.md``)::

    core < index < nodes (retrievers, rerankers, prompts, generators, compressors)
         < pipeline < ingest < evals < app

Every import points down or stays inside its layer, and no two modules import each other (no
cycle). Every import counts:

* ``import`` statements anywhere, also inside functions (a deferred import is still a
  dependency, it only hides the cycle from the interpreter);
* the package ``__init__`` a dotted import runs: ``import a.b.c`` executes ``a/__init__`` and
  ``a/b/__init__``, so it depends on everything they import (not counted for the importing
  module's own ancestors: a package re-exporting its own modules is not a cycle);
* imports by name: a string constant naming a module of the five packages, in a module that
  calls ``importlib.import_module`` or ``__import__`` (e.g. a registry's list of modules).

``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.

The packages do not show the layers yet (``rag/`` holds core, index, pipeline, ingest and app;
that relocation comes later), so :data:`LAYER_OF` maps every current module to its layer by
prefix; a module no prefix covers fails the test (the package root ``rag`` is mapped by itself
only, :data:`EXACT`). :data:`EXCEPTIONS` lists the upward imports
that remain, each with its reason; a new one fails the test.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rag", "retrievers", "rerankers", "prompts", "evals")
LAYERS = ("core", "index", "nodes", "pipeline", "ingest", "evals", "app")

# module prefix -> layer; the longest matching prefix wins
LAYER_OF: dict[str, str] = {
    # core: value types, errors, the node contract and configs, model resolution and runtimes
    # the package root (rag/__init__, this module only: see EXACT): re-exports types, errors and
    # the contract, and wires core's caches to the index layer's one writer
    # (rag.models.use_writer(rag.index.files.publish)); core never imports rag.index itself
    "rag": "index",
    "rag.types": "core",
    "rag.errors": "core",
    "rag.nodes": "core",
    "rag.config": "core",
    "rag.extras": "core",
    "rag.models": "core",
    "rag.llm": "core",
    "rag.encoders": "core",
    "rag.runtime": "core",
    "rag.embed_cache": "core",
    "rag.filters": "core",
    "rag.tokens": "core",
    "rag.tracing": "core",
    "rag.concurrency": "core",
    "rag.onnx_runtime": "core",
    "rag.remote_encoder": "nodes",  # an encoder node, registered by name (NODE_MODULES)
    # index: the only writer of files; opening an index
    "rag.index": "index",
    "rag.persist": "index",
    # nodes: the five node families and the prompts they render
    "retrievers": "nodes",
    "rerankers": "nodes",
    "prompts": "nodes",
    "rag.generators": "nodes",
    "rag.compressors": "nodes",
    "rag.judges": "nodes",
    "rag.xrag": "nodes",
    "rag.xrag_train": "nodes",
    # pipeline: query composition and what it builds on
    "rag.pipeline": "pipeline",
    "rag.citations": "pipeline",
    "rag.grounding": "pipeline",
    "rag.claims": "pipeline",
    "rag.demonstrations": "pipeline",
    "rag.api": "pipeline",
    "rag.toolcalls": "pipeline",
    "rag.presets": "pipeline",
    # ingest: loaders, splitter, contextual headers, parents (its query-time context and
    # parent expansion move to the pipeline with the relocation)
    "rag.ingest": "ingest",
    "rag.ingest.cli": "app",
    # evals: measures, datasets, harness, reports
    "evals": "evals",
    "evals.cli": "app",
    "evals.answers_cli": "app",
    # app: the CLI, the server, chat, agent, integrations (imports every node package)
    "rag.cli": "app",
    "rag.config_cli": "app",
    "rag.completion": "app",
    "rag.demo": "app",
    "rag.server": "app",
    "rag.server_guards": "app",
    "rag.server_state": "app",
    "rag.server_limits": "app",
    "rag.openai_api": "app",
    "rag.openai_routes": "app",
    "rag.chat": "app",
    "rag.chat_cli": "app",
    "rag.chat_service": "app",
    "rag.agent": "app",
    "rag.tool_turn": "app",
    "rag.integrations": "app",
    # framework metadata <-> Document conversion, shared with the ingest adapters
    "rag.integrations._common": "ingest",
}

# entries of LAYER_OF that map that module only, not its submodules (every other rag module is
# listed, so an unmapped one fails)
EXACT = {"rag"}

# (importer, imported) -> why it is still allowed; each one is an upward arrow left to remove
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("rag.nodes", "retrievers"): "lazy registry (NODE_MODULES): goes when rag/app registers nodes",
    ("rag.nodes", "rerankers"): "lazy registry (NODE_MODULES)",
    ("rag.nodes", "rag.generators"): "lazy registry (NODE_MODULES)",
    ("rag.nodes", "rag.compressors"): "lazy registry (NODE_MODULES)",
    ("rag.nodes", "rag.pipeline"): "lazy registry (NODE_MODULES)",
    ("rag.nodes", "rag.ingest"): "lazy registry (NODE_MODULES)",
    ("rag.nodes", "rag.remote_encoder"): "lazy registry (NODE_MODULES)",
    ("rag.ingest.adapters", "rag.integrations"): "runs rag/integrations/__init__ (lazy PEP 562 "
    "re-exports, nothing app-level at import) for rag.integrations._common; goes when _common "
    "moves to rag/ingest",
}


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (root / pkg).rglob("*.py"):
            parts = p.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = p
    return mods


def _dynamic_imports(tree: ast.AST, mods: dict[str, Path]) -> list[str]:
    """Module names imported by name: string constants naming a module, in a module that calls
    ``import_module`` / ``__import__``."""
    calls = any(
        isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == "import_module")
            or (isinstance(n.func, ast.Name) and n.func.id in ("import_module", "__import__"))
        )
        for n in ast.walk(tree)
    )
    if not calls:
        return []
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in mods
    ]


@functools.cache
def _trees(root: Path) -> dict[str, ast.Module]:
    return {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in _modules(root).items()}


def _targets(mod: str, is_pkg: bool, tree: ast.Module, mods: dict[str, Path]) -> list[str]:
    """The module names ``mod`` imports, as written (statements anywhere, and by name)."""
    targets = _dynamic_imports(tree, mods)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
            targets += subs if len(subs) == len(node.names) else [base, *subs]
    return targets


def _known(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _own(mod: str, other: str) -> bool:
    """``other`` is ``mod`` or one of its ancestor packages."""
    return mod == other or mod.startswith(other + ".")


def import_graph(root: Path = ROOT, plant: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Module -> the modules it depends on; ``plant`` appends source text to modules (a test
    of the checker itself)."""
    mods = _modules(root)
    trees = dict(_trees(root))
    for m, extra in (plant or {}).items():
        trees[m] = ast.parse(mods[m].read_text(encoding="utf-8") + "\n" + extra)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for t in _targets(mod, path.name == "__init__.py", trees[mod], mods):
            k = _known(t, mods)
            if k and not _own(mod, k):
                graph[mod].add(k)
    # importing a.b.c runs the inits of a and a.b: a dependency on what they import (an init
    # that imports nothing adds none); not for the importer's own ancestors
    direct = {m: set(d) for m, d in graph.items()}
    for mod, deps in direct.items():
        for k in deps:
            parts = k.split(".")
            for i in range(1, len(parts)):
                pkg = ".".join(parts[:i])
                if pkg in mods and direct[pkg] and not _own(mod, pkg):
                    graph[mod].add(pkg)
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


def layer(mod: str) -> str | None:
    """The layer of ``mod`` by its longest prefix in :data:`LAYER_OF` (None: unmapped)."""
    name = mod
    while name:
        if name in LAYER_OF and (name == mod or name not in EXACT):
            return LAYER_OF[name]
        name = name.rpartition(".")[0]
    return None


def upward(graph: dict[str, set[str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """Every import from a lower layer to a higher one: ``(importer, imported) -> layers``."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    out = {}
    for a, deps in graph.items():
        la = layer(a)
        for b in deps:
            lb = layer(b)
            if la is not None and lb is not None and rank[lb] > rank[la]:
                out[(a, b)] = (la, lb)
    return out


def test_every_module_has_a_layer():
    assert [m for m in sorted(_modules(ROOT)) if layer(m) is None] == []


def test_the_module_import_graph_has_no_cycle():
    # the known upward arrows (EXCEPTIONS) are left out here: each is listed with its reason
    graph = import_graph()
    for a, b in EXCEPTIONS:
        graph[a].discard(b)
    assert cycles(graph) == []


def test_every_import_points_down_or_stays_in_its_layer():
    up = upward(import_graph())
    new = {f"{a} ({la}) -> {b} ({lb})" for (a, b), (la, lb) in up.items()
           if (a, b) not in EXCEPTIONS}
    assert sorted(new) == []
    stale = set(EXCEPTIONS) - set(up)
    assert not stale, f"exceptions no longer needed, remove them: {sorted(stale)}"


def test_the_checker_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "plant",
    [
        "from evals.trec import read_run\n",  # a plain import, core -> evals
        "def f():\n    import rag.cli\n",  # deferred, core -> app
        "import importlib\nimportlib.import_module('rag.server')\n",  # by name, core -> app
        "def f():\n    from rag.index.files import publish\n",  # core -> the writer: injected
    ],
    ids=["import", "deferred", "importlib", "writer"],
)
def test_the_checker_finds_a_planted_upward_import(plant):
    assert not any(a == "rag.types" for a, _ in upward(import_graph()))
    up = upward(import_graph(plant={"rag.types": plant}))
    assert any(a == "rag.types" for a, _ in up), up


def test_the_checker_follows_package_inits():
    # a core module importing one retrievers submodule runs retrievers/__init__, which imports
    # every retriever: the checker sees that edge (and the cycle it closes)
    graph = import_graph(plant={"rag.errors": "def f():\n    from retrievers import fusion\n"})
    assert "retrievers" in graph["rag.errors"]
    assert any("rag.errors" in c and "retrievers" in c for c in cycles(graph))
