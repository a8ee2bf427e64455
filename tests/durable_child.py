"""Child process of tests/nodes/test_stores_durable.py: ingest a JSONL durably, acknowledging
batches.

    python tests/durable_child.py SOURCE INDEX ACKS [--batch N] [--delay S]

A batch's ids are appended to ACKS (one line per batch, fsynced) only after
``DurableIndex.add`` returned, i.e. after the batch is durable. The encoder is a cheap
deterministic token-hashing embedder: the durability protocol is under test, not the model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from retrievers.stores.durable import DurableIndex, ingest_jsonl  # noqa: E402

DIM = 32


def hash_encode(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for n, t in enumerate(texts):
        for tok in t.lower().split():
            h = zlib.crc32(tok.encode())
            out[n, h % DIM] += 1.0 if (h >> 16) & 1 else -1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("index")
    ap.add_argument("acks")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    with open(args.acks, "a", encoding="utf-8") as acks:

        def ack(seq: int, ids: list[str]) -> None:
            acks.write(f"{seq}\t{','.join(ids)}\n")
            acks.flush()
            os.fsync(acks.fileno())
            time.sleep(args.delay)

        ingest_jsonl(args.source, DurableIndex(args.index), hash_encode, args.batch, ack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
