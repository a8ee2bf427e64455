"""Saving and loading retrievers as plain files (config JSON + documents JSONL + node state)."""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, DataError
from rag.types import Document


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder, fsync, rename, fsync the folder (never a
    half-written file); the index layer's one writer, :func:`rag.index.files.atomic_write_bytes`."""
    from rag.index.files import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` from JSON Lines (``.gz`` too); a bad line raises
    :class:`DataError` naming file and line."""
    import gzip

    p = Path(path)
    if not p.exists():
        raise DataError(f"file {str(p)!r} does not exist")
    if p.is_dir():
        raise DataError(f"{str(p)!r} is a folder; pass a JSON Lines file")
    opener = gzip.open if p.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(p, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{p}:{lineno}: malformed JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    kind = type(row).__name__
                    raise DataError(f"{p}:{lineno}: expected a JSON object, got {kind}")
                yield lineno, row
    except UnicodeDecodeError as e:
        raise DataError(
            f"{p}:{lineno + 1}: not UTF-8 (byte {e.object[e.start]:#04x}); "
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{p}: not a readable gzip file ({e}); re-create it") from None


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All objects of a JSON Lines file (see :func:`iter_jsonl`)."""
    return [row for _, row in iter_jsonl(path)]


def read_documents(path: str | os.PathLike[str]) -> list[Document]:
    """Read a corpus JSONL: ``{"_id"|"id", "text", "title"?, "metadata"?, ...}`` per line."""
    from pydantic import ValidationError

    from rag.types import as_documents

    docs = []
    for lineno, row in enumerate(read_jsonl(path), 1):
        if "_id" not in row and "id" not in row:
            raise DataError(f"{path}: record {lineno} has no '_id' or 'id' field")
        if "text" not in row:
            raise DataError(f"{path}: record {lineno} has no 'text' field")
        try:
            docs.extend(as_documents([row]))
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"])
            where = f" (field {field!r})" if field else ""
            raise DataError(f"{path}: record {lineno}{where}: {err['msg']}") from None
    return docs


def save_retriever(retriever: Any, path: Path) -> Path:
    """Save as an index folder (:func:`rag.index.write_index`): documents once, state, manifest."""
    from rag.index import write_index

    return write_index(retriever, path)


def load_retriever(path: str | os.PathLike[str]) -> Any:
    """Open a retriever saved with :func:`rag.index.write_index` or ``Pipeline.save`` (verified;
    see :func:`rag.index.open_index`). A folder of the older layout (``config.json`` +
    ``documents.jsonl``) still opens."""
    from rag.index import is_index, open_index

    p = Path(path)
    if is_index(p):
        return open_index(p)[0]
    return _load_legacy(p)


def _load_legacy(p: Path) -> Any:
    from rag.nodes import Node

    if not (p / "config.json").exists():
        from rag.index.folder import check_not_orphaned

        check_not_orphaned(p)
        raise ConfigError(
            f"{str(p)!r} is not a saved index (no manifest.json); run `rag index` first"
        )
    retriever: Any = Node.from_config(p / "config.json")
    rows = read_jsonl(p / "documents.jsonl")
    retriever._docs = {r["id"]: Document(**r) for r in rows}
    retriever._load_state(p)
    return retriever
