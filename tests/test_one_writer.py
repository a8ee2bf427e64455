"""One writer of files: no module of ``rag``, ``retrievers``, ``rerankers`` or ``prompts`` outside
``rag/index/`` replaces or renames a file (issue #34). They publish through
:mod:`rag.index.files` (temp, fsync, rename, fsync of the folder); core's caches get that writer
from the package root (:func:`rag.models.use_writer`). Dataset downloads in ``evals/`` are exempt.

The scan parses every module and flags, anywhere (also inside functions):

* ``os.replace``, ``os.rename``, ``os.renames``, ``shutil.move`` (as attributes, or imported by
  name from ``os`` / ``shutil``);
* ``x.rename(target)`` / ``x.replace(target)`` with exactly one positional argument and no
  keyword: ``Path.rename`` / ``Path.replace`` (``str.replace`` takes two, ``dataclasses.replace``
  and ``datetime.replace`` take keywords).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rag", "retrievers", "rerankers", "prompts", "evals")
WRITER = "rag/index/"  # the index layer: the only code that renames files
EXEMPT = {"evals/download.py": "dataset downloads (unpacked archives moved into the data folder)"}
MODULE_CALLS = {("os", "replace"), ("os", "rename"), ("os", "renames"), ("shutil", "move")}


def renames(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` of every rename or replace of a file in ``source``."""
    tree = ast.parse(source)
    by_name = {  # from os import replace [as r]
        a.asname or a.name: f"{n.module}.{a.name}"
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module in ("os", "shutil")
        for a in n.names
        if (n.module, a.name) in MODULE_CALLS
    }
    out = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        if isinstance(f, ast.Name) and f.id in by_name:
            out.append((n.lineno, by_name[f.id]))
        elif isinstance(f, ast.Attribute):
            base = f.value.id if isinstance(f.value, ast.Name) else None
            if (base, f.attr) in MODULE_CALLS:
                out.append((n.lineno, f"{base}.{f.attr}"))
            elif f.attr in ("rename", "replace") and len(n.args) == 1 and not n.keywords:
                out.append((n.lineno, f".{f.attr}()"))
    return out


def test_no_module_outside_rag_index_renames_files():
    found = []
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            rel = p.relative_to(ROOT).as_posix()
            if rel.startswith(WRITER) or rel in EXEMPT:
                continue
            found += [f"{rel}:{line}: {what}" for line, what in renames(p.read_text("utf-8"))]
    assert found == [], "publish through rag.index.files (publish, write_array, write_durable)"


def test_the_writer_does_rename_so_the_scan_can_see_one():
    # the scan is not blind: the one writer itself is flagged (and is allowed)
    assert renames((ROOT / WRITER / "files.py").read_text("utf-8"))


@pytest.mark.parametrize(
    "plant",
    [
        "import os\nos.replace(tmp, path)\n",
        "import os\ndef f():\n    os.rename(a, b)\n",
        "from os import replace as swap\nswap(a, b)\n",
        "import shutil\nshutil.move(a, b)\n",
        "tmp.replace(path / 'x.npy')\n",
        "Path(tmp).rename(target)\n",
    ],
    ids=["os.replace", "deferred os.rename", "from-import", "shutil.move", "Path.replace",
         "Path.rename"],
)
def test_the_scan_finds_a_planted_rename(plant):
    assert renames(plant)


@pytest.mark.parametrize(
    "fine",
    [
        "s.replace('a', 'b')\n",  # str.replace
        "dataclasses.replace(x, a=1)\n",
        "d.replace(tzinfo=None)\n",
        "os.path.join(a, b)\n",
    ],
)
def test_the_scan_ignores_what_is_not_a_rename(fine):
    assert renames(fine) == []


def test_publish_makes_a_file_or_folder_whole_and_leaves_no_temp(tmp_path):
    from rag.index.files import publish, write_array

    write_array(tmp_path / "a.npy", np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), [0, 1, 2])
    write_array(tmp_path / "a.npy", np.arange(2, dtype=np.float32))  # replaces
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), [0, 1])

    def folder(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")

    publish(tmp_path / "model", folder)
    publish(tmp_path / "model", folder)  # published by someone else first: kept, no error
    assert (tmp_path / "model" / "config.json").read_text() == "{}"

    def killed(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish(tmp_path / "b.bin", killed)
    assert not (tmp_path / "b.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "model"]


def test_core_caches_write_through_the_installed_writer(tmp_path, monkeypatch):
    # the package root installed rag.index.files.publish into core; the embedding cache's shards
    # go through it
    from rag import embed_cache, models
    from rag.index import files

    assert models._writer is files.publish
    seen: list[str] = []

    def spy(target: Path, produce):  # the real writer, recording what it published
        seen.append(Path(target).name)
        return files.publish(target, produce)

    monkeypatch.setattr(models, "_writer", spy)
    cache = embed_cache.EmbeddingCache(tmp_path, "k")
    cache.encode(["a", "b"], lambda texts: np.ones((len(texts), 2), np.float32))
    assert seen[0] == "key.json" and [s.split(".", 1)[1] for s in seen[1:]] == [
        "vecs.npy", "hashes.npy"]
    again = embed_cache.EmbeddingCache(tmp_path, "k")
    assert again.encode(["b"], lambda texts: pytest.fail("cached")).shape == (1, 2)
