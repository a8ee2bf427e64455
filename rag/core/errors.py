"""The ragnodes exception hierarchy: one root, one class per kind of failure, messages that state
the fix.

Kinds (each is a :class:`RagError`; the CLI prints any of them as one line and exits 2, the
server answers with the status below, never a traceback):

==========================  =======================================================  ======
kind                        what went wrong                                          HTTP
==========================  =======================================================  ======
:class:`ConfigError`        a configuration value or argument (config files, node     400
                            parameters, server options)
:class:`InputError`         a request's input: an empty question, ``k`` < 1, a         400
                            filter's syntax, a file the user named
:class:`NotFoundError`      a named thing that does not exist (a conversation, a       404
                            document id)
:class:`IndexStateError`    an index folder's state: nothing indexed, locked by        409
                            another writer, corrupt (:class:`IndexCorruptError`: 503)
:class:`ModelError`         a model that cannot be resolved or loaded                   503
:class:`GenerationError`    a generator produced nothing or its backend failed          502
==========================  =======================================================  ======

``InputError`` subclasses ``ConfigError`` (and ``NotFoundError`` ``InputError``): a bad value is
a bad value wherever it came from, and code written against ``except ConfigError`` (the one
class for every bad value before the split) keeps catching it. :class:`MissingExtraError` and
:class:`DataError` keep their own bases.
"""

from __future__ import annotations


class RagError(Exception):
    """Root of every error ragnodes raises on purpose."""

    http_status = 400  # the server's HTTP status for this kind


class ConfigError(RagError, ValueError):
    """A bad argument or configuration value (``k1 must be > 0, got -1``)."""


class InputError(ConfigError):
    """A request's input is unusable (``query 'q1' has empty text; pass a non-empty question``)."""


class NotFoundError(InputError, LookupError):
    """A named thing does not exist (``no conversation with id 'x'; ...``)."""

    http_status = 404


class MissingExtraError(RagError, ImportError):
    """An optional dependency is not installed; the message names the exact install command."""


class ModelError(RagError, OSError):
    """A model cannot be resolved or loaded; the message names the model and what to install or
    pass instead."""

    http_status = 503


class ModelNotFoundError(ModelError):
    """A model name or path could not be resolved to weights on this machine."""


class GenerationError(RagError, RuntimeError):
    """A generator produced no output, or its backend failed; the message says which and what to
    check (the backend's URL, the model, ``max_new_tokens``)."""

    http_status = 502


class DataError(RagError, ValueError):
    """A malformed input file; the message names the file and the line."""


class IndexStateError(RagError, RuntimeError):
    """An index's state does not allow the operation; the message says what to run."""

    http_status = 409


class NotIndexedError(IndexStateError):
    """A retriever was asked to search before anything was indexed or loaded."""


class IndexCorruptError(IndexStateError, DataError):
    """An index file does not match its manifest (truncated, emptied, rotated, deleted); the
    message names the file and the repair command."""

    http_status = 503


class IndexLockedError(IndexStateError):
    """Another process holds an index folder's writer lock."""


NO_OUTPUT = (
    "the generator produced no output; check its backend (the server's URL and logs, or the "
    "model) and that max_new_tokens > 0"
)
