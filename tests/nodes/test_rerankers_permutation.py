"""parse_permutation never raises and falls back to the prior order (property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerankers import mentioned_ids, parse_permutation, windows

GARBAGE = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="0123456789[]> ,.\n-abcXYZ", max_size=300),
    st.lists(st.integers(-50, 200), max_size=40).map(lambda xs: " > ".join(f"[{x}]" for x in xs)),
    st.binary(max_size=50).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=400, deadline=None)
@given(text=GARBAGE, n=st.integers(0, 120))
def test_parser_survives_garbage_and_keeps_prior_order(text: str, n: int) -> None:
    perm = parse_permutation(text, n)
    assert sorted(perm) == list(range(n))  # a permutation, whatever the text
    head = mentioned_ids(text, n)
    assert perm[: len(head)] == head  # the ids the model gave come first, in its order
    tail = perm[len(head) :]
    assert tail == sorted(tail)  # the rest follow in their prior order


@settings(max_examples=200, deadline=None)
@given(perm=st.permutations(list(range(12))), sep=st.sampled_from([" > ", ">", ", ", "\n"]))
def test_parser_reads_a_clean_answer_exactly(perm: list[int], sep: str) -> None:
    text = sep.join(f"[{i + 1}]" for i in perm)
    assert parse_permutation(text, 12) == perm


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("[2] > [1] > [3]", 3, [1, 0, 2]),
        ("[3] > [3] > [1]", 3, [2, 0, 1]),  # duplicate dropped, missing 2 appended
        ("[0] > [4] > [2]", 3, [1, 0, 2]),  # out of range dropped
        ("The most relevant is [2], then maybe 3.", 3, [1, 2, 0]),  # prose ignored
        ("", 3, [0, 1, 2]),
        ("[1] " + "9" * 5000, 3, [0, 1, 2]),  # huge numbers do not blow up
        ("[02] > [1]", 3, [1, 0, 2]),  # leading zeros
        ("١ ٢", 2, [0, 1]),  # non-ASCII digits are not ids
        (None, 2, [0, 1]),
        ("[1]", 0, []),
        ("[1]", -3, []),
    ],
)
def test_parser_examples(text: object, n: int, expected: list[int]) -> None:
    assert parse_permutation(text, n) == expected


@pytest.mark.parametrize(
    ("n", "window", "step", "expected"),
    [
        (0, 4, 2, []),
        (3, 4, 2, [(0, 3)]),
        (4, 4, 2, [(0, 4)]),
        (10, 4, 2, [(6, 10), (4, 8), (2, 6), (0, 4)]),
        (25, 20, 10, [(5, 25), (0, 15)]),  # RankGPT's loop would stop before rank 1
    ],
)
def test_windows_cover_bottom_to_top(n, window, step, expected) -> None:
    assert windows(n, window, step) == expected


@given(n=st.integers(1, 300), window=st.integers(2, 30), step=st.integers(1, 29))
def test_windows_always_reach_the_top_and_bottom(n: int, window: int, step: int) -> None:
    if step >= window:
        return
    ws = windows(n, window, step)
    assert ws[0][1] == n and ws[-1][0] == 0
    assert all(0 < b - a <= window for a, b in ws)
