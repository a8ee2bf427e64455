"""What an index accepts, checked at the edge before anything is applied.

A document id is a non-empty string of at most ``MAX_ID_CHARS`` characters; metadata is a JSON
object nested at most ``MAX_METADATA_DEPTH`` deep and at most ``MAX_METADATA_BYTES`` as JSON.
The library (``Pipeline.index``), the CLI (exit 2) and the server (422) use these checks, so a
document that could not be stored, searched or returned is never half-applied.

>>> check_document(Document(id="", text="x"))
Traceback (most recent call last):
...
rag.core.errors.ConfigError: document 1: the id is empty; give every document a non-empty id
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from rag.core.errors import ConfigError
from rag.core.types import Document, as_documents, unique_ids

MAX_ID_CHARS = 512
MAX_METADATA_DEPTH = 16
MAX_METADATA_BYTES = 65_536


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (an object or array counts one level), iteratively."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v.values())
            stack.extend((str(x), d) for x in v)  # keys are text too
        elif isinstance(v, (list, tuple)):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v)
        elif isinstance(v, str):
            check_text(v, "metadata", "metadata")
        elif isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"metadata holds {v}, which JSON cannot store")
        elif not (v is None or isinstance(v, (str, int, float, bool))):
            raise ConfigError(f"metadata holds a {type(v).__name__}, which JSON cannot store")
    return deepest


def check_id(doc_id: Any, where: str) -> str:
    if not isinstance(doc_id, str) or not doc_id:
        raise ConfigError(f"{where}: the id is empty; give every document a non-empty id")
    if len(doc_id) > MAX_ID_CHARS:
        raise ConfigError(
            f"{where}: the id has {len(doc_id)} characters, more than {MAX_ID_CHARS}"
        )
    return doc_id


def check_metadata(metadata: Any, where: str) -> None:
    if not isinstance(metadata, dict):
        raise ConfigError(f"{where}: metadata must be a JSON object, got {type(metadata).__name__}")
    try:
        depth = _depth(metadata)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if depth > MAX_METADATA_DEPTH:
        raise ConfigError(
            f"{where}: metadata is nested {depth} deep, more than {MAX_METADATA_DEPTH}"
        )
    size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ConfigError(
            f"{where}: metadata is {size} bytes as JSON, more than {MAX_METADATA_BYTES}"
        )


def check_text(value: str, field: str, where: str) -> None:
    """Text must be storable as UTF-8: a lone surrogate (``"\\ud800"``, from JSON escapes or
    a bad decoder) is refused here, not by the serializer with a traceback."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(
            f"{where}: the {field} holds a lone surrogate ({value[e.start]!r} at character "
            f"{e.start}), which UTF-8 cannot store; fix the input's encoding"
        ) from None


def check_document(doc: Document, n: int = 1) -> Document:
    where = f"document {doc.id!r}" if doc.id else f"document {n}"
    check_text(doc.id, "id", f"document {n}")
    check_id(doc.id, where)
    check_text(doc.text, "text", where)
    if doc.title:
        check_text(doc.title, "title", where)
    check_metadata(doc.metadata, where)
    return doc


def check_documents(documents: Sequence[Document | dict[str, Any]]) -> list[Document]:
    """Validated documents (see the module docstring); raises :class:`ConfigError` naming the
    first bad one."""
    docs = as_documents(documents)
    unique_ids(docs)
    for n, d in enumerate(docs, 1):
        check_document(d, n)
    return docs
