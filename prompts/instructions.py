"""Query instructions of embedding model families, kept as data in ``instructions.yaml``.

Instruction-tuned embedders are asymmetric: the query carries a prefix or an instruction, the
passage does not (or carries its own fixed prefix). :func:`template_for` picks a family's template
from a model id by the regular expressions in ``instructions.yaml`` (first match in file order), or
by an explicit family name; :func:`format_query` fills it for one :class:`~rag.core.types.Query`.

=====================  ================================================================
family                 query text
=====================  ================================================================
e5 / multilingual-e5   ``"query: {query}"`` (passages: ``"passage: "``)
bge-en-v1.5            ``"Represent this sentence for searching relevant passages: {query}"``
e5-mistral-instruct,   ``"Instruct: {task}\\nQuery: {query}"``
NV-Embed, gte-Qwen2
Qwen3-Embedding        ``"Instruct: {task}\\nQuery:{query}"`` (the model card's spacing)
none (MiniLM, ...)     ``"{query}"``
=====================  ================================================================

>>> t = template_for("intfloat/e5-mistral-7b-instruct")
>>> format_query(t, Query(text="bm25?", instruction="Find definitions"))
'Instruct: Find definitions\\nQuery: bm25?'
>>> format_query(template_for("BAAI/bge-base-en-v1.5"), Query(text="bm25?"))[:9]
'Represent'
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from pydantic import BaseModel, ConfigDict

from rag.core.errors import ConfigError
from rag.core.types import Query


class InstructionTemplate(BaseModel):
    """One family's query template (``{query}``, optionally ``{task}``) and passage prefix."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    patterns: tuple[str, ...] = ()
    query: str = "{query}"
    document_prefix: str = ""
    default_task: str | None = None

    @property
    def uses_task(self) -> bool:
        """Whether a query's instruction changes the text (the template has ``{task}``)."""
        return "{task}" in self.query


@functools.cache
def _registry() -> tuple[dict[str, InstructionTemplate], str]:
    import yaml

    text = (resources.files("prompts") / "instructions.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    families = {}
    for row in data["families"]:
        t = InstructionTemplate(**{**row, "patterns": tuple(row.get("patterns", ()))})
        if "{query}" not in t.query:
            raise ConfigError(f"instructions.yaml: family {t.name!r} has no '{{query}}'")
        families[t.name] = t
    return families, data["fallback"]


def families() -> dict[str, InstructionTemplate]:
    """Every family of ``instructions.yaml`` by name, in match order."""
    return dict(_registry()[0])


def template_for(model_id: str, family: str | None = None) -> InstructionTemplate:
    """The template of ``family`` if given (an explicit override), else of the first family whose
    pattern matches ``model_id`` (HF id, local path or a packaged short name), else ``none``."""
    fams, fallback = _registry()
    if family is not None:
        if family not in fams:
            raise ConfigError(f"unknown instruction family {family!r}; known: {', '.join(fams)}")
        return fams[family]
    mid = _hf_id(model_id)
    for t in fams.values():
        if any(re.search(p, mid, flags=re.IGNORECASE) for p in t.patterns):
            return t
    return fams[fallback]


def _hf_id(model_id: str) -> str:
    """Packaged short names (``minilm``) -> their HF id, so that patterns see the real name."""
    from rag.core.models import PACKAGED, canonical

    key = canonical(model_id)
    return PACKAGED[key].hf_id if key in PACKAGED else model_id


def format_query(
    template: InstructionTemplate, query: Query, default_task: str | None = None
) -> str:
    """The text to embed for ``query``: ``query.instruction`` fills ``{task}``, else
    ``default_task``, else the family's default. Templates without ``{task}`` ignore the
    instruction (the model was not trained to follow one)."""
    if not template.uses_task:
        return template.query.format(query=query.text)
    task: str | None
    if query.instruction:
        task = query.instruction
    else:
        task = default_task if default_task is not None else template.default_task
    if not task:
        raise ConfigError(
            f"template {template.name!r} needs a task: give the query an instruction "
            "or pass default_task"
        )
    return template.query.format(task=task.strip(), query=query.text)


def instruction_line(query: Query) -> str:
    """``"Instruction: ...\\n"`` for a query that carries one, else the empty string: the
    ``{{instruction}}`` slot of the LLM prompt templates (rerankers, the think retriever).

    >>> instruction_line(Query(text="bm25?", instruction="Prefer reviews."))
    'Instruction: Prefer reviews.\\n'
    """
    return f"Instruction: {query.instruction.strip()}\n" if query.instruction else ""
