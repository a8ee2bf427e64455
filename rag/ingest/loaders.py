"""Load your own files as :class:`~rag.core.types.Document` s: files, folders (recursive, include /
exclude globs) and JSONL / CSV corpora.

Every format is turned into plain text with light Markdown structure, so one heading-aware
splitter (:mod:`rag.ingest.splitter`) serves them all:

=========== ============================================================ =====================
suffix      how                                                          text offsets are into
=========== ============================================================ =====================
.txt        UTF-8 text as is                                             the file
.md         Markdown as is (``#`` headings drive the splitter)           the file
.html .htm  ``html2text`` (headings become ``#`` lines, no line wrap)    the extracted text
.pdf        ``pypdf`` text per page, pages joined by a blank line;       the extracted text
            ``metadata["pages"]`` holds each page's ``[start, end)``
.docx       ``python-docx`` paragraphs; ``Heading N`` styles become      the extracted text
            ``#``-lines, table rows ``a | b``
.jsonl(.gz) one document per line (``{"_id"|"id", "text", "title"?}``)   the record's text
.csv        one document per row, columns mapped by :class:`CsvColumns`  the row's text
=========== ============================================================ =====================

A bad file (zero bytes, binary, not UTF-8, larger than ``max_bytes``, encrypted or broken PDF,
broken DOCX) is skipped with one warning line naming the file and the reason; ``strict=True``
raises :class:`~rag.core.errors.DataError` instead. Folders yield only files with a known suffix
(others are counted as ``ignored``), hidden files and folders are skipped. Symlinks are resolved
once: a linked folder is walked (each real folder once, so link cycles end), a file reached twice
(itself and through a link) is indexed once, under the first path in sorted order. A CSV row with
a blank or repeated id is skipped with a warning naming ``file:line``.

>>> result = load_paths(["notes/"], include=["*.md"])         # doctest: +SKIP
>>> result.documents[0].metadata["source"], result.summary()   # doctest: +SKIP
('notes/intro.md', 'loaded 12 documents from 12 files; skipped 0 bad files; ignored 3')
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.core.errors import DataError
from rag.core.types import Document

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
SUFFIXES = (*TEXT_SUFFIXES, *HTML_SUFFIXES, ".pdf", ".docx", ".jsonl", ".jsonl.gz", ".csv")
MAX_BYTES = 50 * 2**20
_ATX = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_SETEXT_TITLE = re.compile(r"^([^\s#].*)\n {0,3}(?:={3,}|-{3,})[ \t]*$", re.M)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


class SkipFile(Exception):
    """Raised by a format reader for a file that cannot be read; the message is the reason."""


@dataclass(frozen=True)
class CsvColumns:
    """Which CSV columns make a document: ``text`` (one or more, joined by a blank line),
    ``id`` (default: ``<file>:<row>``), ``title``; all other columns go to ``metadata``."""

    text: tuple[str, ...] = ("text",)
    id: str | None = None
    title: str | None = None

    @classmethod
    def parse(cls, spec: str) -> CsvColumns:
        """``"text=body,abstract;id=doc_id;title=name"`` (the CLI's ``--csv-columns``)."""
        kw: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("text", "id", "title") or not value:
                raise DataError(
                    f"bad --csv-columns part {part!r}; use text=COL[,COL];id=COL;title=COL"
                )
            kw[key] = tuple(v.strip() for v in value.split(",")) if key == "text" else value
        return cls(**kw)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class LoadResult:
    """Documents loaded, files they came from (``source -> sha256`` of the bytes), bad files."""

    documents: list[Document] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    ignored: int = 0

    def summary(self) -> str:
        return (
            f"loaded {len(self.documents)} documents from {len(self.files)} files; "
            f"skipped {len(self.skipped)} bad files; ignored {self.ignored} of unsupported types"
        )


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".jsonl.gz" if name.endswith(".jsonl.gz") else path.suffix.lower()


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def discover(
    paths: Iterable[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[list[tuple[Path, str]], int]:
    """``[(file, source)]`` in a stable order, and how many folder files were ignored.

    ``source`` is the path as the user wrote it (a folder's files: ``folder/rel/path``), posix
    style. Globs match the path relative to its folder or the bare file name; a named file is
    always taken unless excluded."""
    out: list[tuple[Path, str]] = []
    ignored = 0
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DataError(f"{str(raw)!r} does not exist")
        if p.is_file():
            if not _matches(p.name, exclude):
                out.append((p, p.as_posix()))
            continue
        for f in _walk(p):
            rel = f.relative_to(p).as_posix()
            if any(part.startswith(".") for part in f.relative_to(p).parts) or not f.is_file():
                continue
            if exclude and _matches(rel, exclude):
                continue
            if include:
                if not _matches(rel, include):
                    continue
            elif _suffix(f) not in SUFFIXES:
                ignored += 1
                continue
            out.append((f, (p / rel).as_posix()))
    return _once(out), ignored


def _once(found: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """One entry per file: a source named twice, or a link to a file already found, is dropped."""
    seen: set[str] = set()
    real: set[str] = set()
    unique = []
    for f, src in found:
        target = os.path.realpath(f)
        if src in seen or target in real:
            continue
        seen.add(src)
        real.add(target)
        unique.append((f, src))
    return unique


def _walk(root: Path) -> list[Path]:
    """Every path under ``root``, sorted; symlinked folders are followed once (a folder reached
    again through another link, or a link cycle, is not entered twice)."""
    out: list[Path] = []
    visited: set[tuple[int, int]] = set()
    for here, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(here)
        if (st.st_dev, st.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs.sort()
        out.extend(Path(here) / name for name in files)
    return sorted(out)


def doc_id_for(source: str, roots: Sequence[str | Path]) -> str:
    """A file's document id: its path relative to the folder it was found in (the file name for
    a named file), so ids survive moving the whole folder."""
    for r in roots:
        rp = Path(r)
        if rp.is_dir():
            try:
                return Path(source).relative_to(rp).as_posix()
            except ValueError:
                continue
    return Path(source).name


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise SkipFile("binary file (NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SkipFile(f"not UTF-8 text (byte {e.start}); convert it to UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _md_title(text: str, fallback: str) -> str:
    """The first ATX (``# T``) or Setext (``T`` over ``===``) level-1 or -2 heading."""
    found = [m for m in (_ATX.search(text), _SETEXT_TITLE.search(text)) if m]
    if not found:
        return fallback
    return min(found, key=lambda m: m.start()).group(1).strip()


def _read_text(data: bytes, stem: str, suffix: str) -> tuple[str, str, dict[str, Any]]:
    text = _decode(data)
    title = _md_title(text, stem) if suffix in (".md", ".markdown") else stem
    return text, title, {}


def _read_html(data: bytes, stem: str) -> tuple[str, str, dict[str, Any]]:
    from rag.core.extras import require

    html2text = require("html2text", feature="reading .html files")
    raw = _decode(data)
    conv = html2text.HTML2Text()
    conv.body_width = 0  # no hard wrapping: sentences stay on one line
    conv.ignore_images = True
    conv.ignore_emphasis = True
    conv.ignore_links = True
    text = conv.handle(raw).strip() + "\n"
    m = _HTML_TITLE.search(raw)
    title = " ".join(m.group(1).split()) if m else _md_title(text, stem)
    return text, title, {}


def _read_pdf(data: bytes, stem: str) -> tuple[str, str, dict[str, Any]]:
    from rag.core.extras import require

    pypdf = require("pypdf", feature="reading .pdf files")
    log = logging.getLogger("pypdf")  # its repair notes would add lines to our one warning
    level, log.level = log.level, logging.ERROR
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise SkipFile("encrypted PDF (needs a password)")
        texts = [(page.extract_text() or "").strip() for page in reader.pages]
        info = reader.metadata
        title = str(info.title).strip() if info is not None and info.title else ""
    except SkipFile:
        raise
    except Exception as e:  # pypdf raises many types for damaged files
        raise SkipFile(f"broken PDF ({type(e).__name__}: {str(e)[:80]})") from None
    finally:
        log.setLevel(level)
    if not any(texts):
        raise SkipFile("PDF has no extractable text (scanned images?)")
    pages, parts, pos = [], [], 0
    for t in texts:
        pages.append([pos, pos + len(t)])
        parts.append(t)
        pos += len(t) + 2
    return "\n\n".join(parts), title or stem, {"pages": pages}


def _read_docx(data: bytes, stem: str) -> tuple[str, str, dict[str, Any]]:
    from rag.core.extras import require

    docx = require("docx", feature="reading .docx files")
    try:
        d = docx.Document(io.BytesIO(data))
    except Exception as e:
        raise SkipFile(f"broken DOCX ({type(e).__name__}: {str(e)[:80]})") from None
    lines, title = [], d.core_properties.title or ""
    for para in d.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        level = re.fullmatch(r"Heading (\d)", style)
        if style == "Title":
            title = title or text
            lines.append(f"# {text}")
        elif level:
            lines.append("#" * min(6, int(level.group(1))) + f" {text}")
        else:
            lines.append(text)
    for table in d.tables:
        for row in table.rows:
            lines.append(" | ".join(c.text.strip() for c in row.cells))
    if not lines:
        raise SkipFile("DOCX has no text")
    text = "\n\n".join(lines) + "\n"
    return text, title or _md_title(text, stem), {}


def _read_csv(
    path: Path,
    data: bytes,
    source: str,
    columns: CsvColumns,
    warn: Callable[[str], None] | None = None,
) -> list[Document]:
    """One document per row. A row with a blank or repeated id is skipped with one warning
    naming ``file:line`` (the file is still read; bad rows never abort a run)."""
    text = _decode(data)
    say = warn if warn is not None else (lambda m: warnings.warn(m, stacklevel=3))
    reader = csv.DictReader(io.StringIO(text))
    missing = [
        c
        for c in (*columns.text, columns.id, columns.title)
        if c and c not in (reader.fieldnames or [])
    ]
    if missing:
        raise SkipFile(f"CSV has no column {missing[0]!r} (columns: {reader.fieldnames})")
    docs = []
    seen: set[str] = set()
    for n, row in enumerate(reader, 1):
        body = "\n\n".join((row.get(c) or "").strip() for c in columns.text).strip()
        if not body:
            continue
        doc_id = (row.get(columns.id) or "").strip() if columns.id else f"{path.name}:{n}"
        line = reader.line_num  # the row's last physical line (a quoted cell may span lines)
        if not doc_id:
            say(f"skipped row {source}:{line}: blank {columns.id!r} cell; fill in an id")
            continue
        if doc_id in seen:
            say(f"skipped row {source}:{line}: id {doc_id!r} repeats an earlier row's")
            continue
        seen.add(doc_id)
        used = {*columns.text, columns.id, columns.title}
        meta = {k: v for k, v in row.items() if k not in used and k is not None}
        docs.append(
            Document(
                id=doc_id,
                text=body,
                title=(row.get(columns.title) or "") if columns.title else "",
                metadata={**meta, "source": source, "format": "csv", "row": n},
            )
        )
    return docs


def _read_jsonl(path: Path, source: str) -> list[Document]:
    from rag.index.persist import read_documents

    try:
        docs = read_documents(path)
    except (DataError, UnicodeDecodeError, OSError, EOFError) as e:
        raise SkipFile(str(e).replace(str(path) + ":", "").strip()) from None
    return [
        d.model_copy(update={"metadata": {"source": source, "format": "jsonl", **d.metadata}})
        for d in docs
    ]


def load_file(
    path: str | Path,
    source: str | None = None,
    doc_id: str | None = None,
    csv_columns: CsvColumns | None = None,
    max_bytes: int = MAX_BYTES,
    warn: Callable[[str], None] | None = None,
) -> list[Document]:
    """Documents of one file (one for text formats, one per record for JSONL/CSV).

    Raises :class:`SkipFile` with the reason for a file that cannot be read; a bad CSV row is
    skipped with a ``warn`` line naming ``file:line``."""
    p = Path(path)
    source = source if source is not None else p.as_posix()
    size = p.stat().st_size
    if size == 0:
        raise SkipFile("empty file (0 bytes)")
    if size > max_bytes:
        raise SkipFile(f"larger than {max_bytes // 2**20} MiB ({size / 2**20:.0f} MiB)")
    suffix = _suffix(p)
    if suffix in (".jsonl", ".jsonl.gz"):
        return _read_jsonl(p, source)
    data = p.read_bytes()
    if suffix == ".csv":
        return _read_csv(p, data, source, csv_columns or CsvColumns(), warn)
    stem = p.name[: -len(suffix)] if suffix else p.name
    if suffix in HTML_SUFFIXES:
        text, title, meta = _read_html(data, stem)
    elif suffix == ".pdf":
        text, title, meta = _read_pdf(data, stem)
    elif suffix == ".docx":
        text, title, meta = _read_docx(data, stem)
    else:
        text, title, meta = _read_text(data, stem, suffix)
    if not text.strip():
        raise SkipFile("no text")
    return [
        Document(
            id=doc_id if doc_id is not None else p.name,
            text=text,
            title=title,
            metadata={**meta, "source": source, "format": suffix.lstrip(".") or "txt"},
        )
    ]


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_paths(
    paths: Iterable[str | Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    strict: bool = False,
    csv_columns: CsvColumns | None = None,
    max_bytes: int = MAX_BYTES,
    only: Callable[[str, str], bool] | None = None,
    warn: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LoadResult:
    """Load every file under ``paths`` (see the module docstring).

    Args:
        only: ``only(source, sha256) -> bool``; files for which it is false are hashed but not
            parsed (incremental re-indexing reads only new or changed files).
        warn: called with one line per skipped file or CSV row (default: :func:`warnings.warn`).
        progress: called as ``progress(files_done, files_total)`` after each file.
    """
    roots = list(paths)
    found, ignored = discover(roots, include, exclude)
    result = LoadResult(ignored=ignored)
    say = warn if warn is not None else (lambda m: warnings.warn(m, stacklevel=3))
    for done, (f, source) in enumerate(found, 1):
        if progress is not None:
            progress(done - 1, len(found))
        try:
            data = f.read_bytes() if f.stat().st_size <= max_bytes else b""
            digest = file_hash(data)
            result.files[source] = digest
            if only is not None and not only(source, digest):
                continue
            docs = load_file(f, source, doc_id_for(source, roots), csv_columns, max_bytes, say)
        except (SkipFile, OSError) as e:
            result.files.pop(source, None)
            if strict:
                raise DataError(f"{source}: {e}; fix or --exclude it (or drop --strict)") from None
            result.skipped.append(Skipped(source, str(e)))
            say(f"skipped {source}: {e}")
            continue
        for d in docs:
            d.metadata["sha256"] = digest
        result.documents.extend(docs)
    if progress is not None:
        progress(len(found), len(found))
    return result
