"""Every constructor parameter of every registered node is used: read back by the node (or its
bases) after ``__init__`` stored it, or consumed by ``__init__`` itself (turned into other state,
passed to what it builds). ``test_contract.py``'s config round trip cannot catch a parameter that
is stored and then ignored: it round-trips perfectly and changes nothing.

Static, over the source (no model is built): for a parameter ``p`` of ``cls.__init__``,

* ``self.p`` is read (or ``getattr(self, "p")``) in a method of ``cls`` or one of its bases in
  the five packages (a store ``self.p = p`` is not a read; ``to_config``'s generic ``getattr``
  does not count); or
* ``__init__`` uses ``p`` other than storing it under its own name or checking it (an argument of
  a call that is not a check, part of another attribute's value); or
* another module of the packages reads ``<node>.p`` (e.g. a Qdrant schema built from a
  retriever's settings, the embedding cache reading an encoder's ``cache``).
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from pathlib import Path

import rag.ingest  # noqa: E402, F401  (registers every node type)
from rag.core.nodes import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rag", "retrievers", "rerankers", "prompts", "evals")
CHECKS = ("check", "_check", "isinstance", "len", "type", "ConfigError", "InputError")


def _self_reads(cls: type) -> set[str]:
    """Attribute names read on ``self`` in the methods of ``cls`` and its bases (ours)."""
    out: set[str] = set()
    for k in inspect.getmro(cls):
        ours = k is cls or k.__module__.split(".")[0] in PACKAGES
        if not ours or k.__name__ == "Node":
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(k)))
        for n in ast.walk(tree):
            if (
                isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id == "self"
                and isinstance(n.ctx, ast.Load)
            ):
                out.add(n.attr)
            elif (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Name)
                and n.func.id == "getattr"
                and len(n.args) >= 2
                and isinstance(n.args[0], ast.Name)
                and n.args[0].id == "self"
                and isinstance(n.args[1], ast.Constant)
            ):
                out.add(str(n.args[1].value))
    return out


def _init_uses(cls: type) -> set[str]:
    """Names ``cls.__init__`` uses beyond ``self.p = p`` and checks."""
    fn = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__))).body[0]
    used: set[str] = set()
    for st in ast.walk(fn):
        if isinstance(st, ast.Assign):
            tgt = st.targets[0]
            if (
                isinstance(tgt, ast.Attribute)
                and isinstance(st.value, ast.Name)
                and tgt.attr == st.value.id
            ):
                continue  # self.p = p: a store, not a use
            used |= {x.id for x in ast.walk(st.value) if isinstance(x, ast.Name)}
        elif isinstance(st, ast.Call):
            f = st.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name.startswith(CHECKS):
                continue
            for a in [*st.args, *(kw.value for kw in st.keywords)]:
                used |= {x.id for x in ast.walk(a) if isinstance(x, ast.Name)}
    return used


@functools.cache
def _outside_reads() -> set[str]:
    """Attribute names read on anything but ``self`` anywhere in the packages, ``getattr``
    literals, and, in a module that calls ``getattr`` with a computed name, its string constants
    (``for key in ("shard_number", ...): getattr(node, key)``)."""
    out: set[str] = set()
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(p.read_text(encoding="utf-8"))
            computed = any(
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Name)
                and n.func.id == "getattr"
                and len(n.args) >= 2
                and not isinstance(n.args[1], ast.Constant)
                for n in ast.walk(tree)
            )
            for n in ast.walk(tree):
                if computed and isinstance(n, ast.Constant) and isinstance(n.value, str):
                    out.add(n.value)
                if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load):
                    if not (isinstance(n.value, ast.Name) and n.value.id == "self"):
                        out.add(n.attr)
                elif (
                    isinstance(n, ast.Call)
                    and isinstance(n.func, ast.Name)
                    and n.func.id == "getattr"
                    and len(n.args) >= 2
                    and isinstance(n.args[1], ast.Constant)
                    and not (isinstance(n.args[0], ast.Name) and n.args[0].id == "self")
                ):
                    out.add(str(n.args[1].value))
    return out


def unused_parameters(cls: type) -> list[str]:
    params = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if cls.__init__ is object.__init__:
        return []
    used = _self_reads(cls) | _init_uses(cls) | _outside_reads()
    return [p for p in params if p not in used]


def test_every_constructor_parameter_of_every_registered_node_is_used():
    assert len(REGISTRY) > 40
    bad = {name: unused_parameters(cls) for name, cls in sorted(REGISTRY.items())}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_check_finds_a_stored_but_ignored_parameter():
    from rag.core.nodes import BaseReranker

    class Ignoring(BaseReranker):
        def __init__(self, temperature_of_the_moon: float = 1.0, scale: float = 2.0) -> None:
            self.temperature_of_the_moon = temperature_of_the_moon  # stored, never read
            self.scale = scale

        def _score(self, query, docs):  # noqa: ANN001
            return [self.scale * len(d.text) for d in docs]

    assert unused_parameters(Ignoring) == ["temperature_of_the_moon"]
