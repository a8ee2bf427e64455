"""Prompt templates as versioned files, and the one loader/renderer.

Templates live in ``prompts/templates/<name>.txt`` and use ``{{variable}}`` placeholders (so
JSON and braces in prompt text need no escaping). A template's version is the first 12 hex digits
of its SHA-256, recorded with every answer or ranking that used it.

>>> sorted(available())[:1]
['answer_system']
>>> render("answer_user", question="Q?", sources="[1] text")[:8]
'Sources:'
"""

from __future__ import annotations

import functools
import hashlib
import re
from importlib import resources

from rag.core.errors import ConfigError

_VAR = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def available() -> list[str]:
    root = resources.files("prompts") / "templates"
    return sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".txt"))


@functools.cache
def load(name: str) -> str:
    """The raw text of template ``name`` (trailing newline stripped)."""
    path = resources.files("prompts") / "templates" / f"{name}.txt"
    if not path.is_file():
        raise ConfigError(f"unknown prompt template {name!r}; available: {', '.join(available())}")
    return path.read_text(encoding="utf-8").rstrip("\n")


def version(name: str) -> str:
    return hashlib.sha256(load(name).encode("utf-8")).hexdigest()[:12]


def variables(name: str) -> set[str]:
    return set(_VAR.findall(load(name)))


def render(name: str, **values: object) -> str:
    """Fill every ``{{var}}``; missing or unexpected variables are errors, never blanks."""
    needed = variables(name)
    missing = needed - set(values)
    extra = set(values) - needed
    if missing or extra:
        raise ConfigError(
            f"template {name!r} takes {sorted(needed)}; missing {sorted(missing)}, "
            f"unexpected {sorted(extra)}"
        )
    return _VAR.sub(lambda m: str(values[m.group(1)]), load(name))
