"""``rag config validate FILE`` and ``rag config schema [TYPE]``.

``validate`` builds every node of a JSON/YAML config without loading any model (constructors only
store and check settings) and prints one line per node, or the first problem as one line with
exit code 2. ``schema`` prints the JSON Schema of one node type's config, or of every registered
type (``{"oneOf": [...]}``), for editors that complete YAML; ``schema filter`` prints the metadata
filter language's (:data:`rag.core.filters.FILTER_SCHEMA`, docs/filters.md).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rag.core.config import node_schema
from rag.core.errors import ConfigError
from rag.core.nodes import REGISTRY, Node


def _walk(node: Any, depth: int = 0) -> list[str]:
    """One line per node of a built config tree, indented by nesting."""
    lines: list[str] = []
    if isinstance(node, Node):
        lines.append(f"{'  ' * depth}{node.name} ({type(node).__name__})")
        for value in vars(node).values():
            lines.extend(_walk(value, depth + 1))
    elif isinstance(node, (list, tuple)):
        for item in node:
            lines.extend(_walk(item, depth))
    return lines


def cmd_validate(args: argparse.Namespace) -> int:
    node = Node.from_config(args.file)
    print(f"ok: {args.file}")
    for line in _walk(node):
        print(f"  {line}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    if args.type == "filter":  # the metadata filter language (rag.core.filters, docs/filters.md)
        from rag.core.filters import FILTER_SCHEMA

        print(json.dumps(FILTER_SCHEMA, indent=2))
        return 0
    if args.type:  # rag/app/__init__ registered every node type
        if args.type not in REGISTRY:
            known = ", ".join(sorted(REGISTRY)) + "; or 'filter' (the metadata filter language)"
            raise ConfigError(f"unknown node type {args.type!r}; known types: {known}")
        schema: dict[str, Any] = node_schema(REGISTRY[args.type])
    else:
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "ragnodes node config",
            "oneOf": [node_schema(REGISTRY[name]) for name in sorted(REGISTRY)],
        }
    print(json.dumps(schema, indent=2))
    return 0


def add_config_parser(sub: Any) -> None:
    p = sub.add_parser("config", help="validate a node/pipeline config, or print its JSON Schema")
    csub = p.add_subparsers(dest="config_command", required=True)
    v = csub.add_parser("validate", help="build every node of FILE (no models load)")
    v.add_argument("file", help="a .json/.yaml node or pipeline config")
    v.set_defaults(func=cmd_validate)
    s = csub.add_parser("schema", help="JSON Schema of a node type's config (all types if none)")
    s.add_argument(
        "type",
        nargs="?",
        default=None,
        help="a registered node type, e.g. bm25; or 'filter': the metadata filter language",
    )
    s.set_defaults(func=cmd_schema)
