"""The application layer: the `rag` CLI (one subcommand registry), the server (with the
OpenAI-compatible routes), chat, agent and integrations.

It is the one layer that imports every node package: :func:`register_all` registers every node
type (``rag.ingest`` brings the chunker and the situator, and through ``rag.pipeline`` the
retrievers, rerankers, generators, compressors and encoders), so that ``Node.from_config`` and
``rag config schema`` know them all. The CLI calls it once its arguments are parsed, so that
``rag --help`` stays fast; importing this package imports nothing.
"""


def register_all() -> None:
    """Import every node package, so that every node type is registered (idempotent)."""
    import rag.ingest  # noqa: F401
