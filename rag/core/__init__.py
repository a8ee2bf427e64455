"""The core layer: value types, errors, the node contract (Protocols, registry, config
round-trip, base classes), declared configs, model-name resolution, the encoder and LLM runtimes,
the embedding cache. It imports no other layer; importing it registers no node package."""
