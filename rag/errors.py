"""The ragnodes exception hierarchy: one root, a few subclasses, messages that state the fix."""

from __future__ import annotations


class RagError(Exception):
    """Root of every error ragnodes raises on purpose."""


class ConfigError(RagError, ValueError):
    """A bad argument or configuration value (``k must be >= 1, got 0``)."""


class MissingExtraError(RagError, ImportError):
    """An optional dependency is not installed; the message names the exact install command."""


class ModelNotFoundError(RagError, OSError):
    """A model name or path could not be resolved to weights on this machine."""


class DataError(RagError, ValueError):
    """A malformed input file; the message names the file and the line."""


class NotIndexedError(RagError, RuntimeError):
    """A retriever was asked to search before anything was indexed or loaded."""


class IndexCorruptError(DataError):
    """An index file does not match its manifest (truncated, emptied, rotated, deleted); the
    message names the file and the repair command."""


class IndexLockedError(RagError, RuntimeError):
    """Another process holds an index folder's writer lock."""
