"""Reading a ranking out of free-form LLM text, without ever raising.

LlamaIndex's ``LLMRerank`` raises ``IndexError`` on free-form output (run-llama/llama_index#11092,
#17352); RankGPT's ``clean_response`` / ``remove_duplicate`` is the repair we follow, made total.

>>> parse_permutation("[2] > [3] > [2] > [9]", 4)
[1, 2, 0, 3]
>>> parse_permutation("Sure! Here is the ranking: 3, 1", 3)
[2, 0, 1]
>>> parse_permutation("I cannot rank these.", 3)
[0, 1, 2]
"""

from __future__ import annotations

import re

_INT = re.compile(r"[0-9]+")


def mentioned_ids(text: object, n: int) -> list[int]:
    """The valid 0-based ids the model wrote, in order of first mention (no fill-in)."""
    if not isinstance(n, int) or n <= 0 or not isinstance(text, str):
        return []
    seen: dict[int, None] = {}
    width = len(str(n))
    for m in _INT.finditer(text):
        digits = m.group().lstrip("0") or "0"
        # a run longer than n's digits cannot be an id (and would make int() slow)
        if len(digits) <= width and 1 <= (i := int(digits)) <= n:
            seen.setdefault(i - 1, None)
    return list(seen)


def parse_permutation(text: object, n: int) -> list[int]:
    """Turn model output into a permutation of ``range(n)`` (0-based), best first.

    Every run of digits is read as a 1-based passage id; ids outside ``1..n`` are dropped, a
    repeated id keeps its first position, and the ids never mentioned follow in their prior
    order. Anything else (prose, brackets, ``>``) is ignored. Never raises: a non-string
    ``text`` gives the identity permutation, ``n <= 0`` an empty one.
    """
    if not isinstance(n, int) or n <= 0:
        return []
    order = mentioned_ids(text, n)
    given = set(order)
    order.extend(i for i in range(n) if i not in given)
    return order
