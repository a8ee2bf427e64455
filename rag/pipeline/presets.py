"""Named retrieval presets, packaged as YAML node configs in ``rag/data/presets/``.

* ``fast``: BM25 alone (no model).
* ``quality``: the strongest offline pipeline measured by ``bench/bench_quality.py``, its
  settings chosen on training data only (SciFact's train claims and leave-one-collection-out
  over the shared collections); see ``docs/quality.md`` for what it is, what it costs and how
  much it gains over RRF(BM25, dense).

A preset is an ordinary config: copy ``preset_path("quality")`` and edit it, or use it as is
(``rag index corpus.jsonl --out IDX --preset quality``, ``rag eval --config`` on its path). Besides
the retriever it may carry the eval-config keys of :mod:`evals.systems`: ``chunker`` (``true``:
the chunker ``rag index`` builds from the retriever's encoder) says that long documents are
chunked (files always are; ``rag eval`` then scores documents by their best chunk, and
``rag index corpus.jsonl`` needs ``--chunk-records`` to split records).

>>> sorted(presets())
['fast', 'quality']
>>> load_preset("fast").name
'bm25'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError


def _dir() -> Path:
    return Path(str(resources.files("rag") / "data" / "presets"))


def presets() -> list[str]:
    """Names of the packaged presets."""
    return sorted(p.stem for p in _dir().glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The packaged YAML of preset ``name``."""
    p = _dir() / f"{name}.yaml"
    if not p.exists():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(presets())}")
    return p


def preset_config(name: str) -> dict[str, Any]:
    """The node config of preset ``name`` (a fresh dict)."""
    from rag.core.nodes import load_config_file

    return load_config_file(preset_path(name))


EVAL_KEYS = ("name", "chunker")  # keys of an eval config (evals.systems), not of the node


def load_preset(name: str) -> Any:
    """A new, unindexed retriever built from preset ``name`` (its eval keys left out)."""
    from rag.core.nodes import Node

    cfg = {k: v for k, v in preset_config(name).items() if k not in EVAL_KEYS}
    return Node.from_config(cfg)
