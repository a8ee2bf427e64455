"""The application layer: the `rag` CLI (one subcommand registry), the server (with the
OpenAI-compatible routes), chat, agent and integrations.

It is the one layer that imports every node package: importing it registers every node type
(``rag.ingest`` brings the chunker and the situator, and through ``rag.pipeline`` the retrievers,
rerankers, generators and compressors), so ``Node.from_config`` knows them all.
"""

import rag.ingest  # noqa: F401  (registers every node type: see above)
