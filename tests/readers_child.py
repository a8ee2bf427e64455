"""Child process of tests/index/test_index_readers.py: a reader that opens an index over and over
while a writer commits, and writes one JSON line per open.

    python tests/readers_child.py open-loop INDEX SECONDS OUT   Pipeline.open + search, in a loop
    python tests/readers_child.py hold INDEX                    open, print the generation, sleep

Each line is ``{"ok": true, "docs": N, "writer": [ids...], "generation": G}`` or ``{"ok": false,
"error": "..."}``: the test checks that no open failed and that every result is one generation's
(the writer's documents found are exactly the first ones it acknowledged, and as many documents
as that generation holds).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.pipeline import Pipeline  # noqa: E402

WORD = "ragwriter"  # every document the writer adds holds this word, and no other document does


def open_loop(index: str, seconds: float, out: str) -> None:
    end = time.monotonic() + seconds
    with open(out, "w", encoding="utf-8") as f:
        while time.monotonic() < end:
            try:
                pipe = Pipeline.open(index, read_only=True)
                hits = pipe.search(WORD, k=1000).ids
                line = {"ok": True, "docs": len(pipe.retriever.documents),
                        "writer": [i for i in hits if i.startswith("w")],
                        "generation": pipe.session.generation}
                pipe.close()
            except Exception as e:  # noqa: BLE001 (any failure of a reader is what we count)
                line = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            f.write(json.dumps(line) + "\n")
            f.flush()


def main() -> int:
    mode, index = sys.argv[1], sys.argv[2]
    if mode == "open-loop":
        open_loop(index, float(sys.argv[3]), sys.argv[4])
    elif mode == "hold":
        pipe = Pipeline.open(index, read_only=True)
        print(pipe.session.generation, flush=True)
        time.sleep(120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
