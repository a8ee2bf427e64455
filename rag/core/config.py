"""Declared, validated node configs.

Every registered node declares its configuration once, in its ``__init__`` signature (names,
annotations, defaults). This module turns that signature into a pydantic model, so that a config
file is checked field by field *before* a constructor runs: ``{"type": "bm25", "k1": "abc"}``
fails with ``bm25.k1: Input should be a valid number ... (got 'abc')`` instead of a ``TypeError``
deep inside, and an unknown key names the accepted ones. The same model gives the JSON Schema
(``rag config schema TYPE``) that editors use to complete YAML configs.

Nested nodes (a retriever inside a pipeline, a store inside a retriever) are built and validated
recursively by :func:`rag.core.nodes.Node.from_config`; in the schema they appear as objects with a
``type`` key.

>>> from retrievers import BM25Retriever
>>> sorted(config_model(BM25Retriever).model_fields)[:3]
['b', 'fields', 'k1']
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from rag.core.errors import ConfigError

__all__ = ["config_model", "validate_params", "node_schema"]


def _mentions_node(annotation: Any) -> bool:
    """True when a type annotation refers to a node class or a node Protocol anywhere inside
    (anything with ``load`` and ``to_config``: this module sits below :mod:`rag.core.nodes`)."""
    if isinstance(annotation, type) and all(
        callable(getattr(annotation, attr, None)) for attr in ("load", "to_config")
    ):
        return True
    return any(_mentions_node(a) for a in typing.get_args(annotation))


def _annotations(cls: type) -> dict[str, Any]:
    """Evaluated ``__init__`` annotations; a name that cannot be resolved becomes ``Any``."""
    init = cls.__init__  # type: ignore[misc]
    try:
        return typing.get_type_hints(init)
    except Exception:  # one unresolvable name: resolve the others one by one
        module = inspect.getmodule(init)
        ns = dict(vars(module)) if module else {}
        out: dict[str, Any] = {}
        for name, ann in getattr(init, "__annotations__", {}).items():
            try:
                out[name] = eval(ann, ns) if isinstance(ann, str) else ann  # noqa: S307
            except Exception:
                out[name] = Any
        return out


@functools.cache
def config_model(cls: type) -> type[BaseModel]:
    """The pydantic model of ``cls``'s config, read from its ``__init__`` signature."""
    hints = _annotations(cls)
    fields: dict[str, Any] = {}
    for p in inspect.signature(cls.__init__).parameters.values():  # type: ignore[misc]
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = hints.get(p.name, Any)
        if _mentions_node(ann):
            ann = Any  # nested nodes are built (and checked) by Node.from_config
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (ann, default)
    name = getattr(cls, "name", "") or cls.__name__
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{cls.__name__}Config",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True, title=name),
        **fields,
    )


def _first_error(node: str, err: ValidationError, accepted: list[str]) -> str:
    e = err.errors()[0]
    field = ".".join(str(x) for x in e["loc"])
    if e["type"] == "extra_forbidden":
        return f"{node}: unknown key {field!r}; accepted keys: {', '.join(accepted)}"
    if e["type"] == "missing":
        return f"{node}: missing required key {field!r}"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    return f"{node}.{field}: {e['msg']} (got {e.get('input')!r}){tail}"


def validate_params(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against ``cls``'s declared config; return them, coerced where pydantic's
    lax mode allows (``1`` for a float field). Raises :class:`ConfigError` naming the field."""
    model = config_model(cls)
    node = getattr(cls, "name", "") or cls.__name__
    try:
        checked = model.model_validate(params)
    except ValidationError as e:
        raise ConfigError(_first_error(node, e, list(model.model_fields))) from None
    return {k: getattr(checked, k) for k in params}


def node_schema(cls: type) -> dict[str, Any]:
    """JSON Schema of one node type's config, with its ``type`` constant."""
    model = config_model(cls)
    try:
        schema = model.model_json_schema()
    except Exception as e:  # an annotation with no JSON form
        raise ConfigError(f"{getattr(cls, 'name', cls.__name__)}: no JSON schema ({e})") from None
    name = getattr(cls, "name", "") or cls.__name__
    schema.setdefault("properties", {})["type"] = {"const": name}
    schema.setdefault("required", []).insert(0, "type")
    return schema
